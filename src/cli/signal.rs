//! The signals a long-running command stops on: ctrl-c, and SIGTERM, which is what `kill`,
//! service managers and container runtimes send.

use std::future::Future;

/// Completes on ctrl-c or SIGTERM. Call it inside the runtime before announcing readiness: the
/// handlers are installed by the call itself, not at the first poll, so a signal sent as soon as
/// the command says it is listening is not lost (nor does it kill the process).
pub fn stop_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (interrupt, terminate) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                // no handler could be installed: the signals keep their default, which stops us
                (Err(_), Err(_)) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        tokio::signal::ctrl_c().await.ok();
    }
}
