//! The manual clock (DESIGN.md "Time"): `advanceClock`, a Ledgerstack command offered only by
//! `ledgerstack serve --clock manual`, so tests through real clients can run days of usage in
//! seconds.
//!
//! Moving the clock appends CLOCK.ADVANCE, so the log shows why recorded-at jumped and a restart
//! resumes from the same instant.

use engine::clock::Clock;
use engine::event::operations::ClockAdvanced;
use engine::event::{ClockEvent, EventBody, NewEvent};
use engine::time::Timestamp;
use serde_json::json;
use uuid::Uuid;

use crate::call::Call;
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::protocol::dates::parse_filter_date;
use crate::registry::{CommandSpec, Inherits, Kind, ParamType as T, Roles, field, param};
use crate::response::Reply;

/// The stream CLOCK.ADVANCE events go to.
pub const CLOCK: &str = "clock";

/// The clock commands.
pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "advanceClock",
    kind: Kind::Sync,
    roles: Roles::ADMIN,
    description: "Moves the server's manual clock forward (Ledgerstack; only offered when the server runs with --clock manual). Give either a date (to) or durations (seconds, minutes, hours, days, summed); the clock never moves backwards. Records CLOCK.ADVANCE in the event log.",
    params: &[
        param(
            "seconds",
            T::Long,
            "seconds to move forward (whole number, 0 or more)",
        ),
        param(
            "minutes",
            T::Long,
            "minutes to move forward (whole number, 0 or more)",
        ),
        param(
            "hours",
            T::Long,
            "hours to move forward (whole number, 0 or more)",
        ),
        param(
            "days",
            T::Long,
            "days to move forward (whole number, 0 or more)",
        ),
        param(
            "to",
            T::Date,
            "the instant to move to, not before the current reading (yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ); not with durations",
        ),
    ],
    inherits: Inherits::Nothing,
    response: &[
        field("from", "date", "the clock's reading before"),
        field("to", "date", "the clock's reading after the move"),
        field("now", "date", "the server's current time when answering"),
    ],
    related: "",
    manual_clock_only: true,
    handler: handler!(advance_clock),
}];

/// The server's "now": the clock the log stamps events with (manual or system).
pub fn current_time(ctx: &Ctx) -> Timestamp {
    ctx.clock.now()
}

/// The last instant CloudStack's date format can show (9999-12-31T23:59:59.999Z).
const LATEST: Timestamp = Timestamp::from_millis(253_402_300_799_999);

/// Where the caller asked the clock to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Forward by this many milliseconds.
    By(i64),
    /// To this instant.
    To(Timestamp),
}

impl Target {
    fn from_call(call: &Call) -> Result<Target, ApiError> {
        let units = [
            ("seconds", call.int("seconds")?),
            ("minutes", call.int("minutes")?),
            ("hours", call.int("hours")?),
            ("days", call.int("days")?),
        ];
        let to = call
            .str("to")
            .map(|v| {
                parse_filter_date(v, false).map(Timestamp::from).ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to parse date {v:?} for parameter to: use yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ"
                    ))
                })
            })
            .transpose()?;
        Target::choose(to, &units)
    }

    /// Exactly one of a date or some durations: both would be ambiguous, neither a no-op that
    /// is more likely a typo than a wish.
    fn choose(to: Option<Timestamp>, units: &[(&str, Option<i64>)]) -> Result<Target, ApiError> {
        let given = units.iter().any(|(_, v)| v.is_some());
        match (to, given) {
            (Some(_), true) => Err(ApiError::invalid_param(
                "give either to or durations (seconds, minutes, hours, days), not both",
            )),
            (None, false) => Err(ApiError::invalid_param(
                "give either to or durations (seconds, minutes, hours, days)",
            )),
            (Some(at), false) => Ok(Target::To(at)),
            (None, true) => duration_millis(units).map(Target::By),
        }
    }

    /// The instant to move to from `from`; 431 for one behind it, since recorded-at must never
    /// go backwards in the log.
    fn resolve(self, from: Timestamp) -> Result<Timestamp, ApiError> {
        let too_far =
            || ApiError::invalid_param(format!("the clock can't move past {}", date(LATEST)));
        let to = match self {
            Target::By(millis) => from
                .millis()
                .checked_add(millis)
                .map(Timestamp::from_millis)
                .ok_or_else(too_far)?,
            Target::To(at) => at,
        };
        if to < from {
            return Err(ApiError::invalid_param(format!(
                "the clock only moves forward: it reads {}, asked for {}",
                date(from),
                date(to)
            )));
        }
        if to > LATEST {
            return Err(too_far());
        }
        Ok(to)
    }
}

/// The sum of the durations in milliseconds.
fn duration_millis(units: &[(&str, Option<i64>)]) -> Result<i64, ApiError> {
    units.iter().try_fold(0i64, |total, &(unit, value)| {
        let Some(value) = value else {
            return Ok(total);
        };
        if value < 0 {
            return Err(ApiError::invalid_param(format!(
                "{unit} must be 0 or more: the clock only moves forward"
            )));
        }
        let per_unit: i64 = match unit {
            "seconds" => 1_000,
            "minutes" => 60_000,
            "hours" => 3_600_000,
            _ => 86_400_000,
        };
        value
            .checked_mul(per_unit)
            .and_then(|millis| total.checked_add(millis))
            .ok_or_else(|| ApiError::invalid_param(format!("{unit}={value} is too far")))
    })
}

async fn advance_clock(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    // The dispatcher already hides this command without a manual clock; this only keeps the
    // handler total.
    let Some(manual) = ctx.manual_clock.as_ref() else {
        return Err(ApiError::unknown_command(call.command.name));
    };
    let target = Target::from_call(call)?;
    let from = manual.now();
    let to = target.resolve(from)?;
    // Move first, then append: the store stamps recorded-at from this clock, so the
    // CLOCK.ADVANCE event is recorded at the new time. `advance_to` never moves backwards, so a
    // concurrent move past `to` wins and `reached` reports it.
    let reached = manual.advance_to(to);
    if reached > from {
        // Chosen once, outside the decision, so a retried decision proposes the same event.
        let id = Uuid::new_v4();
        ctx.decide(CLOCK, |_| {
            Ok(vec![
                NewEvent::with_id(
                    id,
                    EventBody::Clock(ClockEvent::Advance(ClockAdvanced { from, to: reached })),
                )
                .by(call.actor())
                .correlated_with(call.request_id),
            ])
        })
        .await?;
    }
    Ok(Reply::Object {
        key: "clock",
        value: json!({
            "from": date(from),
            "to": date(reached),
            "now": date(current_time(ctx)),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn units(seconds: Option<i64>, days: Option<i64>) -> [(&'static str, Option<i64>); 4] {
        [
            ("seconds", seconds),
            ("minutes", None),
            ("hours", None),
            ("days", days),
        ]
    }

    #[test]
    fn durations_are_summed() {
        let all = [
            ("seconds", Some(1)),
            ("minutes", Some(1)),
            ("hours", Some(1)),
            ("days", Some(1)),
        ];
        assert_eq!(
            Target::choose(None, &all).unwrap(),
            Target::By(1_000 + 60_000 + HOUR + 24 * HOUR)
        );
    }

    #[test]
    fn exactly_one_of_date_or_durations() {
        let at = Some(Timestamp::from_millis(HOUR));
        assert_eq!(
            Target::choose(at, &units(None, None)).unwrap(),
            Target::To(Timestamp::from_millis(HOUR))
        );
        assert_eq!(
            Target::choose(at, &units(Some(1), None)).unwrap_err().code,
            431
        );
        assert_eq!(
            Target::choose(None, &units(None, None)).unwrap_err().code,
            431
        );
        assert_eq!(
            Target::choose(None, &units(Some(0), None)).unwrap(),
            Target::By(0)
        );
    }

    #[test]
    fn negative_and_huge_durations_are_refused() {
        assert_eq!(
            Target::choose(None, &units(Some(-1), None))
                .unwrap_err()
                .code,
            431
        );
        assert_eq!(
            Target::choose(None, &units(None, Some(i64::MAX)))
                .unwrap_err()
                .code,
            431
        );
        let far = Target::By(i64::MAX).resolve(Timestamp::from_millis(HOUR));
        assert_eq!(far.unwrap_err().code, 431);
        let past_9999 = Target::By(300 * 365 * 24 * HOUR).resolve(LATEST.add_millis(-HOUR));
        assert_eq!(past_9999.unwrap_err().code, 431);
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let now = Timestamp::from_millis(10 * HOUR);
        let err = Target::To(Timestamp::from_millis(HOUR))
            .resolve(now)
            .unwrap_err();
        assert_eq!(err.code, 431);
        assert_eq!(
            err.text,
            "the clock only moves forward: it reads 1970-01-01T10:00:00+0000, asked for 1970-01-01T01:00:00+0000"
        );
        assert_eq!(Target::To(now).resolve(now).unwrap(), now);
        assert_eq!(
            Target::By(HOUR).resolve(now).unwrap(),
            Timestamp::from_millis(11 * HOUR)
        );
    }

    #[test]
    fn the_command_is_sync_root_only_and_needs_the_manual_clock() {
        let spec = &COMMANDS[0];
        assert!(spec.manual_clock_only);
        assert_eq!(spec.roles, Roles::ADMIN);
        assert!(!spec.is_async());
    }
}
