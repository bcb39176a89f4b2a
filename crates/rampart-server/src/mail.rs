//! Sending messages (reset and verification links) off the request path.
//!
//! Defends against two things: a request whose answer waits on (or reveals) a mail server, and a
//! message lost to one failed delivery. Every message goes into a bounded [`Outbox`]; one task
//! delivers it through the configured [`Mailer`] and retries a failed delivery with growing
//! delays, so an answer never waits for SMTP, and an address that has an account is answered as
//! fast as one that has none. A full outbox refuses new messages (logged) instead of growing.
//! Nothing about a message's content is logged by the outbox itself: its links carry tokens.
//!
//! Transports are `lettre`'s (SMTP over rustls, and RFC 5322 files), behind the [`Mailer`] trait
//! so tests and deployments can swap them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::message::header::ContentType;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;

use crate::config::{MailSettings, MailTransport};

/// Messages waiting to be delivered, at most.
const OUTBOX_CAPACITY: usize = 1024;
/// The longest one delivery may take, whatever the server does.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits before each retry of a failed delivery; then the message is given up (logged).
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(60),
];

/// One plain-text message to one address.
#[derive(Debug, Clone)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Why a message was not delivered (for the log: never the message itself).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MailError(String);

/// Delivers one message.
pub trait Mailer: Send + Sync + std::fmt::Debug + 'static {
    fn deliver<'a>(
        &'a self,
        from: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), MailError>>;
}

/// Builds the RFC 5322 message.
fn build(from: &str, message: &Message) -> Result<lettre::Message, MailError> {
    lettre::Message::builder()
        .from(
            from.parse()
                .map_err(|_| MailError("the sender address".into()))?,
        )
        .to(message
            .to
            .parse()
            .map_err(|_| MailError("the recipient address".into()))?)
        .subject(message.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(message.text.clone())
        .map_err(|err| MailError(err.to_string()))
}

/// Writes each message to the log (development only: production refuses it).
#[derive(Debug)]
struct LogMailer;

impl Mailer for LogMailer {
    fn deliver<'a>(
        &'a self,
        from: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            tracing::info!(
                target: "rampart::outbox",
                from,
                to = %message.to,
                subject = %message.subject,
                "development outbox (RAMPART_MAIL=log):\n{}",
                message.text
            );
            Ok(())
        })
    }
}

/// A `lettre` transport: one `.eml` file per message in a directory, or an SMTP server
/// (pooled connections, TLS through rustls).
struct LettreMailer<T>(T);

impl<T> std::fmt::Debug for LettreMailer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the transport itself: an SMTP transport holds its credentials.
        f.write_str("LettreMailer(..)")
    }
}

impl<T> Mailer for LettreMailer<T>
where
    T: AsyncTransport + Send + Sync + 'static,
    T::Error: std::fmt::Display,
{
    fn deliver<'a>(
        &'a self,
        from: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            let built = build(from, message)?;
            self.0
                .send(built)
                .await
                .map(drop)
                .map_err(|err| MailError(err.to_string()))
        })
    }
}

/// The mailer for `transport`; a `file:` directory is created.
pub fn mailer(transport: &MailTransport) -> anyhow::Result<Arc<dyn Mailer>> {
    Ok(match transport {
        MailTransport::Log => Arc::new(LogMailer),
        MailTransport::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|err| {
                anyhow::anyhow!(
                    "creating the mail directory {}: {}",
                    dir.display(),
                    err.kind()
                )
            })?;
            Arc::new(LettreMailer(AsyncFileTransport::<Tokio1Executor>::new(dir)))
        }
        MailTransport::Smtp(url) => Arc::new(LettreMailer(
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                .map_err(|_| anyhow::anyhow!("RAMPART_MAIL is not an SMTP URL lettre accepts"))?
                .timeout(Some(Duration::from_secs(20)))
                .build(),
        )),
    })
}

/// Where messages wait for delivery; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: mpsc::Sender<Message>,
}

impl Outbox {
    /// An outbox delivering through `mailer` as `from`, with its delivery task started on the
    /// current runtime; `None` when mail is off.
    pub fn start(settings: &MailSettings) -> anyhow::Result<Option<Self>> {
        let Some(transport) = &settings.transport else {
            return Ok(None);
        };
        Ok(Some(Self::with_mailer(
            mailer(transport)?,
            settings.from.clone(),
        )))
    }

    /// An outbox over any mailer (tests count what it delivers).
    pub fn with_mailer(mailer: Arc<dyn Mailer>, from: String) -> Self {
        let (queue, mut waiting) = mpsc::channel::<Message>(OUTBOX_CAPACITY);
        tokio::spawn(async move {
            while let Some(message) = waiting.recv().await {
                // Each message in turn: a slow server slows the outbox, not the requests.
                deliver(mailer.as_ref(), &from, &message).await;
            }
        });
        Self { queue }
    }

    /// Queues `message`; false (and logged) when the outbox is full.
    pub fn send(&self, message: Message) -> bool {
        if self.queue.try_send(message).is_ok() {
            return true;
        }
        tracing::warn!("the mail outbox is full; a message was dropped");
        false
    }
}

async fn deliver(mailer: &dyn Mailer, from: &str, message: &Message) {
    let mut delays = RETRY_DELAYS.iter();
    loop {
        // A server that accepts the connection and never answers must not hold the outbox.
        let attempt = tokio::time::timeout(DELIVERY_TIMEOUT, mailer.deliver(from, message)).await;
        let err = match attempt {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err,
            Err(_) => MailError(format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs())),
        };
        let Some(delay) = delays.next() else {
            tracing::error!(error = %err, "mail delivery failed; the message is given up");
            return;
        };
        tracing::warn!(error = %err, retry_in_secs = delay.as_secs(), "mail delivery failed");
        tokio::time::sleep(*delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails its first `failures` deliveries, then counts successes.
    #[derive(Debug, Default)]
    struct Flaky {
        failures: usize,
        tried: AtomicUsize,
        delivered: AtomicUsize,
    }

    impl Mailer for Flaky {
        fn deliver<'a>(
            &'a self,
            _from: &'a str,
            _message: &'a Message,
        ) -> BoxFuture<'a, Result<(), MailError>> {
            Box::pin(async move {
                if self.tried.fetch_add(1, Ordering::SeqCst) < self.failures {
                    return Err(MailError("connection refused".into()));
                }
                self.delivered.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    fn message() -> Message {
        Message {
            to: "ann@example.com".into(),
            subject: "hello".into(),
            text: "a link".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_delivery_is_retried_and_then_given_up() {
        let twice = Arc::new(Flaky {
            failures: 2,
            ..Flaky::default()
        });
        let outbox = Outbox::with_mailer(twice.clone(), "no-reply@example.com".into());
        assert!(outbox.send(message()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(twice.delivered.load(Ordering::SeqCst), 1);
        assert_eq!(twice.tried.load(Ordering::SeqCst), 3);

        let never = Arc::new(Flaky {
            failures: usize::MAX,
            ..Flaky::default()
        });
        let outbox = Outbox::with_mailer(never.clone(), "no-reply@example.com".into());
        assert!(outbox.send(message()));
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(never.tried.load(Ordering::SeqCst), 1 + RETRY_DELAYS.len());
        assert_eq!(never.delivered.load(Ordering::SeqCst), 0);
    }

    /// Accepts the message and never answers, like a tarpit SMTP server.
    #[derive(Debug, Default)]
    struct Hung {
        tried: AtomicUsize,
    }

    impl Mailer for Hung {
        fn deliver<'a>(
            &'a self,
            _from: &'a str,
            _message: &'a Message,
        ) -> BoxFuture<'a, Result<(), MailError>> {
            self.tried.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_does_not_hold_the_outbox() {
        let hung = Arc::new(Hung::default());
        let outbox = Outbox::with_mailer(hung.clone(), "no-reply@example.com".into());
        assert!(outbox.send(message()));
        assert!(outbox.send(message()));
        // Each message: a first try and three retries, each cut at the timeout.
        let per_message = DELIVERY_TIMEOUT * 4 + RETRY_DELAYS.iter().sum::<Duration>();
        tokio::time::sleep(per_message * 2 + Duration::from_secs(1)).await;
        assert_eq!(
            hung.tried.load(Ordering::SeqCst),
            8,
            "the second message was tried too"
        );
    }

    #[tokio::test]
    async fn file_outbox_writes_one_rfc_5322_file_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = mailer(&MailTransport::File(dir.path().join("outbox"))).unwrap();
        mailer
            .deliver("no-reply@example.com", &message())
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: ann@example.com"), "{text}");
        assert!(text.contains("Subject: hello"), "{text}");
        assert!(text.contains("a link"), "{text}");
    }
}
