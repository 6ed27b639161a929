//! Following a Postgres `NOTIFY` channel: the listener both the policy and the revocation stores
//! use to hear about changes other replicas committed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;

use crate::error_chain;

/// Listens on `channel` and wakes `changed` on every notification, and also when the connection
/// was lost (a notification may have been missed then). Never returns; drop or abort the future
/// to stop it.
///
/// A listener that cannot be created, or that fails, is re-created after `retry`; the caller
/// keeps polling meanwhile, so a notification only makes a change visible sooner, never at all.
/// `listening` is told `true` once the `LISTEN` is in place and `false` whenever it is lost, for
/// the store's status report.
pub async fn follow_channel(
    pool: PgPool,
    channel: &'static str,
    changed: Arc<Notify>,
    retry: Duration,
    listening: impl Fn(bool) + Send,
) {
    loop {
        match listen(&pool, channel).await {
            Ok(mut listener) => {
                listening(true);
                tracing::debug!(channel, "listening for change notifications");
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => changed.notify_one(),
                        // A lost connection, which sqlx re-establishes (and re-LISTENs) on the
                        // next call; what was announced meanwhile is unknown.
                        Ok(None) => changed.notify_one(),
                        Err(error) => {
                            tracing::warn!(
                                channel,
                                error = %error_chain(&error),
                                "lost the change-notification listener; polling until it is back"
                            );
                            break;
                        }
                    }
                }
                listening(false);
                changed.notify_one();
            }
            Err(error) => tracing::warn!(
                channel,
                error = %error_chain(&error),
                "cannot LISTEN for change notifications; polling instead"
            ),
        }
        tokio::time::sleep(retry).await;
    }
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}
