//! A configuration read from files, read again when they change or on SIGHUP.

use std::{
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock, Weak, atomic::AtomicBool},
    time::{Duration, SystemTime},
};

use super::TlsError;

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<Stamp>> {
    files
        .iter()
        .map(|path| {
            std::fs::metadata(path).ok().map(|metadata| Stamp {
                modified: metadata.modified().ok(),
                len: metadata.len(),
                inode: metadata.ino(),
            })
        })
        .collect()
}

type Loader<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// The current `T`, built by a loader from `files`.
pub(super) struct Reloading<T> {
    /// What it is, for the log, e.g. `server certificate`.
    what: &'static str,
    current: RwLock<Arc<T>>,
    files: Vec<PathBuf>,
    load: Loader<T>,
    /// The files as last tried, loaded or not (a broken file is tried again
    /// only once it changes).
    tried: Mutex<Vec<Option<Stamp>>>,
    watching: AtomicBool,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Loads `T` from `files` once; an error is the caller's.
    pub(super) fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        load: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let tried = stamps(&files);
        let current = load()?;
        Ok(Arc::new(Self {
            what,
            current: RwLock::new(Arc::new(current)),
            files,
            load: Box::new(load),
            tried: Mutex::new(tried),
            watching: AtomicBool::new(false),
        }))
    }

    /// What new connections get now.
    pub(super) fn current(&self) -> Arc<T> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again if any changed since last tried (`force`: in
    /// any case); keeps the current value when they do not load. True when
    /// a new value is in force.
    pub(super) fn reload(&self, force: bool) -> bool {
        let now = stamps(&self.files);
        {
            let mut tried = self
                .tried
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !force && *tried == now {
                return false;
            }
            *tried = now;
        }
        match (self.load)() {
            Ok(fresh) => {
                let mut current = self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                *current = Arc::new(fresh);
                tracing::info!(what = self.what, files = ?self.files, "TLS files reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(
                    what = self.what,
                    %error,
                    "TLS files changed but do not load; keeping the previous ones"
                );
                false
            }
        }
    }

    /// Polls the files every `every` and reloads on SIGHUP, for as long as
    /// this value lives; once per value (later calls do nothing). Needs a
    /// tokio runtime.
    pub(super) fn watch(self: &Arc<Self>, every: Duration) {
        if self
            .watching
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let this = Arc::downgrade(self);
        tokio::spawn(watch_loop(this, every));
    }
}

async fn watch_loop<T: Send + Sync + 'static>(this: Weak<Reloading<T>>, every: Duration) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; TLS files reload on change only");
            None
        }
    };
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            Some(()) = async {
                match hangups.as_mut() {
                    Some(hangups) => hangups.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let Some(reloading) = this.upgrade() else {
            return;
        };
        if forced {
            tracing::info!(what = reloading.what, "SIGHUP: reading TLS files again");
        }
        reloading.reload(forced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(path: &std::path::Path) -> Result<String, TlsError> {
        let text = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        if text.starts_with("bad") {
            return Err(TlsError::Pem {
                path: path.to_owned(),
                what: "test value",
                detail: text,
            });
        }
        Ok(text)
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        std::fs::write(&path, "one").unwrap();
        let file = path.clone();
        let reloading = Reloading::new("test", vec![path.clone()], move || text_of(&file)).unwrap();
        assert_eq!(*reloading.current(), "one");
        assert!(!reloading.reload(false), "nothing changed");

        std::fs::write(&path, "two, longer").unwrap();
        assert!(reloading.reload(false));
        assert_eq!(*reloading.current(), "two, longer");

        std::fs::write(&path, "bad file").unwrap();
        assert!(!reloading.reload(false));
        assert_eq!(
            *reloading.current(),
            "two, longer",
            "the last good value stays"
        );

        std::fs::write(&path, "three").unwrap();
        assert!(reloading.reload(false));
        assert_eq!(*reloading.current(), "three");
        assert!(reloading.reload(true), "forced: read even unchanged");
    }

    #[tokio::test]
    async fn the_watcher_picks_a_change_up_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        std::fs::write(&path, "one").unwrap();
        let file = path.clone();
        let reloading = Reloading::new("test", vec![path.clone()], move || text_of(&file)).unwrap();
        reloading.watch(Duration::from_millis(20));
        std::fs::write(&path, "two, longer").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *reloading.current() != "two, longer" {
            assert!(tokio::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn sighup_reads_the_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        std::fs::write(&path, "one").unwrap();
        let file = path.clone();
        let reloading = Reloading::new("test", vec![path.clone()], move || text_of(&file)).unwrap();
        // Polling once an hour: only the signal can bring the change in.
        reloading.watch(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&path, "two, longer").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *reloading.current() != "two, longer" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reloaded on SIGHUP"
            );
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
