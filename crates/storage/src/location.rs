//! Where the data lives: a local directory (the default) or an
//! S3-compatible bucket and prefix, opened once as an `object_store` store
//! that every table, checkpoint and query shares. S3 goes through
//! object_store's own client (no AWS SDK); its settings come from the
//! configuration and, where unset, from the usual `AWS_*` variables.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig,
};
use url::Url;

use crate::error::{Result, StorageError};

/// S3 settings; unset ones fall back to `AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_ALLOW_HTTP`.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub allow_http: Option<bool>,
}

/// How the store is reached.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub s3: S3Options,
    /// Longest wait for one request (retries included) before it fails.
    pub request_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            s3: S3Options::default(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// An opened data location.
#[derive(Clone)]
pub struct DataLocation {
    /// As the user wrote it, for messages.
    display: String,
    /// The data root as a URL ending in `/`: `file:///…/` or `s3://bucket/prefix/`.
    url: Url,
    /// The store, with `/` at its root (the filesystem root or the bucket).
    store: Arc<dyn ObjectStore>,
    /// The data root inside the store.
    root: Path,
    request_timeout: Duration,
}

impl std::fmt::Debug for DataLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataLocation({})", self.url)
    }
}

impl DataLocation {
    /// Opens `spec`: a directory (created if missing) or a `file://` or
    /// `s3://bucket/prefix` URL. Nothing is read or written yet: see
    /// [`DataLocation::check`].
    pub fn open(spec: &str, options: &StoreOptions) -> Result<DataLocation> {
        let problem = |problem: String| StorageError::Location {
            location: spec.to_owned(),
            problem,
        };
        if spec.trim().is_empty() {
            return Err(problem("empty; give a directory or an s3:// URL".into()));
        }
        let (url, store, root): (Url, Arc<dyn ObjectStore>, Path) = match Url::parse(spec) {
            Ok(url) if url.scheme() == "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| problem("no bucket; write s3://bucket/prefix".into()))?
                    .to_owned();
                let prefix = url.path().trim_matches('/').to_owned();
                crate::delta::register_s3_log_store();
                let store = s3_store(&bucket, &options.s3, options.request_timeout)
                    .map_err(|e| problem(e.to_string()))?;
                let url = Url::parse(&format!(
                    "s3://{bucket}/{}",
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{prefix}/")
                    }
                ))
                .map_err(|e| problem(e.to_string()))?;
                (url, Arc::new(store), Path::from(prefix))
            }
            Ok(url) if url.scheme() == "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| problem("not a local path".into()))?;
                local(dir).map_err(problem)?
            }
            Ok(url) if url.scheme().len() > 1 => {
                return Err(problem(format!(
                    "unsupported scheme `{}:`; use a directory, file:// or s3://",
                    url.scheme()
                )));
            }
            // A plain path (a one-letter "scheme" is a Windows drive).
            _ => local(std::path::PathBuf::from(spec)).map_err(problem)?,
        };
        Ok(DataLocation {
            display: spec.to_owned(),
            url,
            store,
            root,
            request_timeout: options.request_timeout,
        })
    }

    /// As the user wrote it.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The data root, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The store, rooted at the filesystem root or the bucket.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// `relative` (like `raw/sales`) under the data root, as a store path.
    pub fn path(&self, relative: &str) -> Path {
        let mut path = self.root.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// `relative` under the data root as a URL ending in `/` (a table's location).
    pub fn dir_url(&self, relative: &str) -> Url {
        let relative = relative.trim_matches('/');
        self.url
            .join(&format!("{relative}/"))
            .unwrap_or_else(|_| self.url.clone())
    }

    /// Longest wait for one request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Writes, reads back and deletes a small object, so that a wrong
    /// endpoint, bad credentials or a read-only directory are reported at
    /// start, in one line, within the request timeout.
    pub async fn check(&self) -> Result<()> {
        let path = self.path("_kpiflow/probe");
        let work = async {
            self.store
                .put(&path, PutPayload::from_static(b"kpiflow"))
                .await
                .map_err(|e| StorageError::store(format!("writing {path}"), e))?;
            self.store
                .get(&path)
                .await
                .map_err(|e| StorageError::store(format!("reading {path}"), e))?;
            self.store
                .delete(&path)
                .await
                .map_err(|e| StorageError::store(format!("deleting {path}"), e))
        };
        let seconds = self.request_timeout.as_secs().max(1) * 2;
        match tokio::time::timeout(Duration::from_secs(seconds), work).await {
            Ok(done) => done.map_err(|e| StorageError::Location {
                location: self.display.clone(),
                problem: format!(
                    "cannot write there ({}); {}",
                    with_causes(&e),
                    if self.url.scheme() == "s3" {
                        "check the bucket, the endpoint and the credentials (storage.s3.* or AWS_*)"
                    } else {
                        "check that the directory exists or can be created and is writable"
                    }
                ),
            }),
            Err(_) => Err(StorageError::Location {
                location: self.display.clone(),
                problem: format!(
                    "no answer within {seconds} s; check the endpoint (storage.s3.endpoint or AWS_ENDPOINT_URL)"
                ),
            }),
        }
    }

    /// The pipeline the location belongs to, if one claimed it.
    pub async fn owner(&self) -> Result<Option<String>> {
        let path = self.path("_kpiflow/pipeline");
        match self.store.get(&path).await {
            Ok(got) => {
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| StorageError::store(format!("reading {path}"), e))?;
                Ok(Some(String::from_utf8_lossy(&bytes).trim().to_owned()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::store(format!("reading {path}"), e)),
        }
    }

    /// Claims the location for `pipeline` (a marker written with a
    /// conditional put), or checks that it already belongs to it.
    pub async fn claim(&self, pipeline: &str) -> Result<()> {
        let path = self.path("_kpiflow/pipeline");
        let put = self
            .store
            .put_opts(
                &path,
                PutPayload::from(pipeline.as_bytes().to_vec()),
                PutMode::Create.into(),
            )
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let owner = self
                    .store
                    .get(&path)
                    .await
                    .map_err(|e| StorageError::store(format!("reading {path}"), e))?
                    .bytes()
                    .await
                    .map_err(|e| StorageError::store(format!("reading {path}"), e))?;
                let owner = String::from_utf8_lossy(&owner).trim().to_owned();
                if owner == pipeline {
                    Ok(())
                } else {
                    Err(StorageError::OtherPipeline {
                        location: self.display.clone(),
                        owner,
                        pipeline: pipeline.to_owned(),
                    })
                }
            }
            Err(e) => Err(StorageError::store(format!("writing {path}"), e)),
        }
    }
}

/// An error with its causes, `: `-separated, each once (an HTTP client's
/// "builder error" says nothing without them).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

fn local(
    dir: std::path::PathBuf,
) -> std::result::Result<(Url, Arc<dyn ObjectStore>, Path), String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the directory: {e}"))?;
    let dir =
        std::fs::canonicalize(&dir).map_err(|e| format!("cannot resolve the directory: {e}"))?;
    let url = Url::from_directory_path(&dir)
        .map_err(|()| format!("{} is not an absolute directory", dir.display()))?;
    let root = Path::from_absolute_path(&dir).map_err(|e| e.to_string())?;
    // Deleting a file also deletes the folders it leaves empty (old
    // checkpoints, vacuumed partitions).
    let store = LocalFileSystem::new().with_automatic_cleanup(true);
    Ok((url, Arc::new(store), root))
}

fn s3_store(
    bucket: &str,
    s3: &S3Options,
    timeout: Duration,
) -> object_store::Result<object_store::aws::AmazonS3> {
    // rustls has two crypto providers enabled in this build and so no
    // default; the HTTP client cannot be built without one. Installing
    // fails harmlessly when one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &s3.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = &s3.session_token {
        builder = builder.with_token(token);
    }
    if let Some(allow) = s3.allow_http {
        builder = builder.with_allow_http(allow);
    }
    // A wrong endpoint or bad credentials fail within the timeout instead
    // of after object_store's default three minutes of retries.
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: timeout,
        ..RetryConfig::default()
    };
    // Set key by key: `with_client_options` would replace the client
    // settings `from_env` read (AWS_ALLOW_HTTP among them).
    let seconds = |d: Duration| format!("{}ms", d.as_millis());
    builder
        .with_retry(retry)
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            seconds(Duration::from_secs(5).min(timeout)),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            seconds(timeout),
        )
        .build()
}
