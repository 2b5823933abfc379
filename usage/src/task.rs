//! The usage server's background tasks (the scheduler, the watchers, the delivery worker): each
//! runs until the handle it was started with stops it.

use std::future::Future;

use tokio::sync::oneshot;

/// Stops a background task.
pub struct TaskHandle {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TaskHandle {
    /// Spawns `body` with the receiver that resolves when the task is asked to stop; `body` must
    /// return soon after.
    pub fn spawn<F, Fut>(body: F) -> TaskHandle
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopping) = oneshot::channel();
        TaskHandle {
            stop: Some(stop),
            task: tokio::spawn(body(stopping)),
        }
    }

    /// Stops the task and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
