//! The usage types of spec/usage.md: ids, names, `listUsageTypes` descriptions and how each is
//! measured.

use serde::{Deserialize, Serialize};

/// How a usage type's quantity is measured, which decides how `usage` and `rawusage` are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Time-based: the quantity is integer milliseconds, shown as hours.
    Hours,
    /// A counter of bytes (network sent/received, disk bytes).
    Bytes,
    /// A counter of operations (disk I/O).
    Count,
}

macro_rules! usage_types {
    ($($variant:ident = $id:literal, $name:literal, $description:literal, $unit:ident, $display:literal;)*) => {
        /// A CloudStack usage type. The discriminant is the wire id (`usagetype`); ids 15–20
        /// are unused, as in CloudStack.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum UsageType {
            $(
                #[doc = $description]
                $variant = $id,
            )*
        }

        impl UsageType {
            /// Every type, by id.
            pub const ALL: &'static [UsageType] = &[$(UsageType::$variant),*];

            /// The type with this wire id.
            pub fn from_id(id: u8) -> Option<UsageType> {
                match id {
                    $($id => Some(UsageType::$variant),)*
                    _ => None,
                }
            }

            /// CloudStack's constant name, such as `RUNNING_VM`.
            pub fn name(self) -> &'static str {
                match self { $(UsageType::$variant => $name,)* }
            }

            /// `listUsageTypes`' description, such as `Running Vm Usage`.
            pub fn description(self) -> &'static str {
                match self { $(UsageType::$variant => $description,)* }
            }

            /// How the quantity is measured.
            pub fn unit(self) -> Unit {
                match self { $(UsageType::$variant => Unit::$unit,)* }
            }

            /// The words after the number in a counter type's `usage` string
            /// (`"1024 bytes sent"`); empty for time-based types, shown as `Hrs`.
            pub fn counter_suffix(self) -> &'static str {
                match self { $(UsageType::$variant => $display,)* }
            }
        }
    };
}

usage_types! {
    RunningVm = 1, "RUNNING_VM", "Running Vm Usage", Hours, "";
    AllocatedVm = 2, "ALLOCATED_VM", "Allocated Vm Usage", Hours, "";
    IpAddress = 3, "IP_ADDRESS", "IP Address Usage", Hours, "";
    NetworkBytesSent = 4, "NETWORK_BYTES_SENT", "Network Usage (Bytes Sent)", Bytes, "bytes sent";
    NetworkBytesReceived = 5, "NETWORK_BYTES_RECEIVED", "Network Usage (Bytes Received)", Bytes, "bytes received";
    Volume = 6, "VOLUME", "Volume Usage", Hours, "";
    Template = 7, "TEMPLATE", "Template Usage", Hours, "";
    Iso = 8, "ISO", "ISO Usage", Hours, "";
    Snapshot = 9, "SNAPSHOT", "Snapshot Usage", Hours, "";
    SecurityGroup = 10, "SECURITY_GROUP", "Security Group Usage", Hours, "";
    LoadBalancerPolicy = 11, "LOAD_BALANCER_POLICY", "Load Balancer Usage", Hours, "";
    PortForwardingRule = 12, "PORT_FORWARDING_RULE", "Port Forwarding Usage", Hours, "";
    NetworkOffering = 13, "NETWORK_OFFERING", "Network Offering Usage", Hours, "";
    VpnUsers = 14, "VPN_USERS", "VPN users usage", Hours, "";
    VmDiskIoRead = 21, "VM_DISK_IO_READ", "VM Disk usage(I/O Read)", Count, "io read";
    VmDiskIoWrite = 22, "VM_DISK_IO_WRITE", "VM Disk usage(I/O Write)", Count, "io write";
    VmDiskBytesRead = 23, "VM_DISK_BYTES_READ", "VM Disk usage(Bytes Read)", Bytes, "bytes read";
    VmDiskBytesWrite = 24, "VM_DISK_BYTES_WRITE", "VM Disk usage(Bytes Write)", Bytes, "bytes write";
    VmSnapshot = 25, "VM_SNAPSHOT", "VM Snapshot storage usage", Hours, "";
    VolumeSecondary = 26, "VOLUME_SECONDARY", "Volume on secondary storage usage", Hours, "";
    VmSnapshotOnPrimary = 27, "VM_SNAPSHOT_ON_PRIMARY", "VM Snapshot on primary storage usage", Hours, "";
    Backup = 28, "BACKUP", "Backup storage usage", Hours, "";
    Bucket = 29, "BUCKET", "Bucket storage usage", Bytes, "bytes";
    Network = 30, "NETWORK", "Network usage", Hours, "";
    Vpc = 31, "VPC", "VPC usage", Hours, "";
}

impl UsageType {
    /// The wire id.
    pub fn id(self) -> u8 {
        self as u8
    }
}
