//! Answers of `GET /api/views/{name}`, kept until the data behind them
//! moves. The live rows change at the engine's tick and the committed
//! tables at a checkpoint, so until the pipeline's progress moves the same
//! question has the same answer: dashboards, wall screens and scripts ask
//! the same URLs over and over, and the query runs once per tick instead
//! of once per request. Requests that arrive while an answer is being
//! computed wait for that one computation. A failed computation is not
//! kept (the next request tries again).
//!
//! Bounded: at most `MAX_ANSWERS` answers of at most `MAX_ANSWER_BYTES`
//! each (a larger one is served but not kept), the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::AppError;
use crate::format::Encoded;

/// Answers kept at most.
const MAX_ANSWERS: usize = 128;
/// Bytes of one kept answer at most.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The data an answer is from: the pipeline's tick and newest checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version {
    pub tick: u64,
    pub epoch: u64,
}

impl Version {
    /// Both only grow: a version is newer when either moved on.
    fn newer_than(self, other: Version) -> bool {
        self.tick > other.tick || self.epoch > other.epoch
    }
}

type Cell = Arc<OnceCell<Encoded>>;

#[derive(Default)]
struct Kept {
    version: Version,
    cells: HashMap<String, Cell>,
    /// Keys in the order they were added.
    order: VecDeque<String>,
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Hit,
    Miss,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
        }
    }
}

#[derive(Default)]
pub struct Answers {
    kept: Mutex<Kept>,
}

impl Answers {
    /// The answer to `key` as of `version`: the kept one, or `compute`'s
    /// (run once however many ask at the same time).
    pub async fn get_or_compute<F, Fut>(
        &self,
        version: Version,
        key: String,
        compute: F,
    ) -> Result<(Encoded, Source), AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Encoded, AppError>>,
    {
        let Some(cell) = self.cell(version, &key) else {
            // Asked with a version older than the kept one (a request that
            // read the progress just before it moved): answer, keep nothing.
            return Ok((compute().await?, Source::Miss));
        };
        if let Some(answer) = cell.get() {
            return Ok((answer.clone(), Source::Hit));
        }
        let mut computed = false;
        let answer = cell
            .get_or_try_init(|| {
                computed = true;
                compute()
            })
            .await?
            .clone();
        if answer.body.len() > MAX_ANSWER_BYTES {
            self.forget(version, &key);
        }
        let source = if computed { Source::Miss } else { Source::Hit };
        Ok((answer, source))
    }

    fn cell(&self, version: Version, key: &str) -> Option<Cell> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if version.newer_than(kept.version) {
            *kept = Kept {
                version,
                ..Kept::default()
            };
        } else if version != kept.version {
            return None;
        }
        if let Some(cell) = kept.cells.get(key) {
            return Some(cell.clone());
        }
        while kept.order.len() >= MAX_ANSWERS {
            if let Some(oldest) = kept.order.pop_front() {
                kept.cells.remove(&oldest);
            }
        }
        let cell = Cell::default();
        kept.cells.insert(key.to_owned(), cell.clone());
        kept.order.push_back(key.to_owned());
        Some(cell)
    }

    fn forget(&self, version: Version, key: &str) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.version == version && kept.cells.remove(key).is_some() {
            kept.order.retain(|k| k != key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().unwrap().cells.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::format::Encoded;

    fn answer(text: &str) -> Encoded {
        Encoded::json(text.as_bytes().to_vec(), false)
    }

    fn v(tick: u64, epoch: u64) -> Version {
        Version { tick, epoch }
    }

    #[tokio::test]
    async fn the_same_question_is_computed_once_per_version() {
        let answers = Answers::default();
        let runs = AtomicUsize::new(0);
        let ask = |version: Version, key: &'static str| {
            let runs = &runs;
            let answers = &answers;
            async move {
                answers
                    .get_or_compute(version, key.into(), || async move {
                        let n = runs.fetch_add(1, Ordering::SeqCst);
                        Ok(answer(&format!("{key}-{n}")))
                    })
                    .await
                    .unwrap()
            }
        };
        let (a, s) = ask(v(1, 0), "a").await;
        assert_eq!((a.body.as_ref(), s), (&b"a-0"[..], Source::Miss));
        let (a, s) = ask(v(1, 0), "a").await;
        assert_eq!((a.body.as_ref(), s), (&b"a-0"[..], Source::Hit));
        // The tick moved: computed again.
        let (a, s) = ask(v(2, 0), "a").await;
        assert_eq!((a.body.as_ref(), s), (&b"a-1"[..], Source::Miss));
        // A checkpoint alone moves it too.
        let (a, _) = ask(v(2, 1), "a").await;
        assert_eq!(a.body.as_ref(), b"a-2");
        // A request with an older version is answered but keeps nothing.
        let (a, s) = ask(v(1, 0), "a").await;
        assert_eq!((a.body.as_ref(), s), (&b"a-3"[..], Source::Miss));
        let (a, s) = ask(v(2, 1), "a").await;
        assert_eq!((a.body.as_ref(), s), (&b"a-2"[..], Source::Hit));
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_computation() {
        let answers = Answers::default();
        let runs = AtomicUsize::new(0);
        let (release, wait) = tokio::sync::watch::channel(false);
        let ask = || {
            let mut wait = wait.clone();
            let runs = &runs;
            answers.get_or_compute(v(1, 0), "k".into(), move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = wait.wait_for(|go| *go).await;
                Ok(answer("k"))
            })
        };
        let all = futures::future::join_all((0..10).map(|_| ask()));
        let releaser = async {
            tokio::task::yield_now().await;
            release.send(true).unwrap();
        };
        let (results, ()) = tokio::join!(all, releaser);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let misses = results
            .iter()
            .filter(|r| r.as_ref().unwrap().1 == Source::Miss)
            .count();
        assert_eq!(misses, 1);
    }

    #[tokio::test]
    async fn failures_and_large_answers_are_not_kept_and_the_count_is_bounded() {
        let answers = Answers::default();
        let failed = answers
            .get_or_compute(v(1, 0), "k".into(), || async {
                Err(AppError::bad_request("no"))
            })
            .await;
        assert!(failed.is_err());
        let (_, s) = answers
            .get_or_compute(v(1, 0), "k".into(), || async { Ok(answer("ok")) })
            .await
            .unwrap();
        assert_eq!(s, Source::Miss);
        let big = vec![b'x'; MAX_ANSWER_BYTES + 1];
        for _ in 0..2 {
            let (_, s) = answers
                .get_or_compute(v(1, 0), "big".into(), || async {
                    Ok(Encoded::json(big.clone(), false))
                })
                .await
                .unwrap();
            assert_eq!(s, Source::Miss);
        }
        for i in 0..MAX_ANSWERS * 2 {
            answers
                .get_or_compute(v(1, 0), format!("k{i}"), || async { Ok(answer("x")) })
                .await
                .unwrap();
        }
        assert_eq!(answers.len(), MAX_ANSWERS);
    }
}
