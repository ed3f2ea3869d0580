//! Lakes on object storage (`s3://`, `gs://`, `az://`) through the `object_store` crate.
//!
//! Object stores have no rename and no directories, so the lake's guarantees are kept with
//! names instead (DESIGN: "conditional puts / unique names"):
//! - an object appears whole or not at all (a single PUT, or a multipart upload that only
//!   becomes visible when completed);
//! - event files are named by their content, so re-uploading after a crash writes the same
//!   object with the same bytes;
//! - a metric partition is one object with a fixed name (`part-0.parquet`): re-running an
//!   as_of overwrites it in one PUT, so readers see the old or the new partition;
//! - a partition whose files change names (a rollup month recomputed, event files compacted or
//!   rewritten) is replaced with markers: `_replaced=<old>=<new>` objects beside the old files,
//!   then the new files, then the old ones deleted. Pulse's listings ([`Remote::list_files`],
//!   and the query engine's store, [`Remote::store_for_engine`]) hide an old file once every
//!   new file its markers name is listed, so pulse sees the old set or the new, never both
//!   (see `lake::compact` for the whole story and what other readers see).
//!
//! Writers stage files on the local disk first (in a work directory per lake URL, under the
//! system temp directory) and upload them when they would have been renamed into place. The
//! writer lock lives in that work directory too: it serializes writers on one machine; run
//! one writer (one `pulse serve` or one scheduled job) per object-store lake.
//!
//! Credentials come from the standard environment variables of each cloud (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), read by the `object_store` builders' `from_env`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::error::{Error, IoContext, Result};

/// How many objects are uploaded, fetched or deleted at once.
const CONCURRENCY: usize = 16;

/// An object-store lake: the store (rooted at the bucket), the lake's prefix inside it and a
/// small runtime of its own for I/O, so the lake's synchronous API works from any thread.
pub struct Remote {
    /// `scheme://bucket/prefix/`, as the user wrote it (normalized to end with `/`).
    url: Url,
    prefix: ObjectPath,
    store: Arc<dyn ObjectStore>,
    io: IoRuntime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Remote {
    pub fn open(location: &str) -> Result<Remote> {
        let mut url = Url::parse(location)
            .map_err(|e| Error::Usage(format!("lake `{location}`: not a valid URL: {e}")))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let prefix = ObjectPath::from(url.path().trim_matches('/'));
        let store = build_store(&url)?;
        let io = IoRuntime::new()?;
        Ok(Remote {
            url,
            prefix,
            store,
            io,
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `scheme://bucket`: what DataFusion keys object stores by.
    pub fn store_url(&self) -> Url {
        let mut base = self.url.clone();
        base.set_path("/");
        base
    }

    /// A separate client for DataFusion (it runs on the session's runtime, not on `io`), whose
    /// listings hide replaced files like [`Remote::list_files`].
    pub fn store_for_engine(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(HideReplaced(build_store(&self.url)?)))
    }

    fn key(&self, rel: &str) -> ObjectPath {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |key, part| key.join(part))
    }

    fn rel(&self, key: &ObjectPath) -> String {
        key.prefix_match(&self.prefix)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| key.to_string())
    }

    fn context(&self, what: &str, rel: &str) -> String {
        format!("{what} {}{rel}", self.url)
    }

    fn wrap(&self, what: &str, rel: &str) -> impl FnOnce(object_store::Error) -> Error {
        let context = self.context(what, rel);
        move |source| Error::ObjectStore { context, source }
    }

    /// Upload local files to their lake paths, a few at a time. Each object appears whole.
    pub fn upload(&self, files: &[(PathBuf, String)]) -> Result<()> {
        let jobs: Vec<_> = files
            .iter()
            .map(|(local, rel)| {
                let (store, key) = (self.store.clone(), self.key(rel));
                let (local, wrap) = (local.clone(), self.wrap("uploading to", rel));
                async move { upload_file(store, key, &local, wrap).await }
            })
            .collect();
        self.run_all(jobs).map(|_| ())
    }

    /// Run `jobs` on the I/O runtime, [`CONCURRENCY`] at a time; their results in order.
    fn run_all<T, F>(&self, jobs: Vec<F>) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.io.block_on(async move {
            futures::stream::iter(jobs)
                .buffered(CONCURRENCY)
                .try_collect::<Vec<T>>()
                .await
        })
    }

    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let payload = PutPayload::from(bytes.to_vec());
        self.io
            .block_on(async move { store.put(&key, payload).await })
            .map(|_| ())
            .map_err(self.wrap("writing", rel))
    }

    /// Fetch many objects at once, in the order asked.
    pub fn get_many(&self, rels: &[String]) -> Result<Vec<bytes::Bytes>> {
        let jobs: Vec<_> = rels
            .iter()
            .map(|rel| {
                let (store, key) = (self.store.clone(), self.key(rel));
                let wrap = self.wrap("reading", rel);
                async move {
                    async { store.get(&key).await?.bytes().await }
                        .await
                        .map_err(wrap)
                }
            })
            .collect();
        self.run_all(jobs)
    }

    pub fn exists(&self, rel: &str) -> Result<bool> {
        let (store, key) = (self.store.clone(), self.key(rel));
        match self.io.block_on(async move { store.head(&key).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.wrap("looking up", rel)(e)),
        }
    }

    /// Lake paths of every object below `rel`, without replaced files and markers.
    pub fn list_files(&self, rel: &str) -> Result<Vec<String>> {
        let metas = self.list_objects(rel)?;
        let paths: Vec<String> = metas.iter().map(|m| self.rel(&m.location)).collect();
        let hidden = replaced(&paths);
        Ok(paths
            .into_iter()
            .zip(hidden)
            .filter(|(p, hidden)| !hidden && !is_marker(p))
            .map(|(p, _)| p)
            .collect())
    }

    /// Every object below `rel`, markers and replaced files included.
    fn list_objects(&self, rel: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        self.io
            .block_on(async move { store.list(Some(&key)).try_collect::<Vec<_>>().await })
            .map_err(self.wrap("listing", rel))
    }

    /// Names of the "directories" (common prefixes) directly below `rel`.
    pub fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let listing = self
            .io
            .block_on(async move { store.list_with_delimiter(Some(&key)).await })
            .map_err(self.wrap("listing", rel))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    pub fn delete(&self, rels: &[String]) -> Result<()> {
        let jobs: Vec<_> = rels
            .iter()
            .map(|rel| {
                let (store, key) = (self.store.clone(), self.key(rel));
                let wrap = self.wrap("deleting", rel);
                async move {
                    match store.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(wrap(e)),
                    }
                }
            })
            .collect();
        self.run_all(jobs).map(|_| ())
    }

    /// Replace the objects below each `rel` with the files of its staged directory. A file
    /// that keeps its name is overwritten in one PUT. An old file the new partition no longer
    /// has first gets a marker `_replaced=<old>=<new>` for each new file of its directory, so
    /// pulse's listings hide it from the moment every such new file is uploaded; then the new
    /// files are uploaded and the old ones deleted. The markers stay until a later
    /// replacement finds them older than [`MARKER_GRACE`] ([`Remote::tidy`]).
    pub fn replace_dirs(&self, swaps: &[(PathBuf, String)]) -> Result<()> {
        let mut uploads = Vec::new();
        let mut stale = Vec::new();
        let mut markers = Vec::new();
        for (staged, rel) in swaps {
            self.tidy(rel)?;
            let new: Vec<String> = local_files(staged)?
                .iter()
                .map(|f| format!("{rel}/{f}"))
                .collect();
            for old in self.list_files(rel)? {
                if new.contains(&old) {
                    continue;
                }
                let (dir, old_name) = old.rsplit_once('/').expect("below rel");
                markers.extend(new.iter().filter_map(|n| {
                    let (new_dir, new_name) = n.rsplit_once('/')?;
                    (new_dir == dir).then(|| marker(dir, old_name, new_name))
                }));
                stale.push(old);
            }
            uploads.extend(
                new.into_iter()
                    .map(|target| (staged.join(&target[rel.len() + 1..]), target)),
            );
        }
        for m in &markers {
            self.put(m, b"")?;
        }
        self.upload(&uploads)?;
        self.delete(&stale)
    }

    /// Clean up after earlier replacements below `rel`: finish one a crash interrupted (its new
    /// files are there and its markers hide the old ones: delete those), and delete markers
    /// older than [`MARKER_GRACE`] whose old file is gone or whose new file never came.
    pub fn tidy(&self, rel: &str) -> Result<()> {
        let metas = self.list_objects(rel)?;
        let paths: Vec<String> = metas.iter().map(|m| self.rel(&m.location)).collect();
        let hidden = replaced(&paths);
        let present: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
        let now = chrono::Utc::now();
        let mut delete: Vec<String> = paths
            .iter()
            .zip(&hidden)
            .filter(|(_, h)| **h)
            .map(|(p, _)| p.clone())
            .collect();
        for (meta, path) in metas.iter().zip(&paths) {
            let Some((old, _)) = parse_marker(path) else {
                continue;
            };
            let old_there = present.contains(old.as_str()) && !delete.contains(&old);
            if !old_there && now - meta.last_modified > MARKER_GRACE {
                delete.push(path.clone());
            }
        }
        self.delete(&delete)
    }
}

/// How long markers outlive the replacement they describe: longer than any listing in flight.
pub const MARKER_GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

const MARKER_PREFIX: &str = "_replaced=";

/// The marker saying `dir/old` is replaced by `dir/new`. Names are stored without `.parquet`,
/// so no `*.parquet` glob ever matches a marker.
fn marker(dir: &str, old: &str, new: &str) -> String {
    let stem = |n: &str| n.strip_suffix(".parquet").unwrap_or(n).to_string();
    format!("{dir}/{MARKER_PREFIX}{}={}", stem(old), stem(new))
}

fn is_marker(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(MARKER_PREFIX))
}

/// `(old path, new path)` of a marker path.
fn parse_marker(path: &str) -> Option<(String, String)> {
    let (dir, name) = path.rsplit_once('/')?;
    let (old, new) = name.strip_prefix(MARKER_PREFIX)?.split_once('=')?;
    Some((
        format!("{dir}/{old}.parquet"),
        format!("{dir}/{new}.parquet"),
    ))
}

/// For each of `paths` (one listing), whether it is a replaced file: markers name it, and every
/// new file they name is in the listing.
fn replaced(paths: &[String]) -> Vec<bool> {
    let present: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
    let mut old_files: std::collections::HashMap<String, bool> = Default::default();
    for (old, new) in paths.iter().filter_map(|p| parse_marker(p)) {
        *old_files.entry(old).or_insert(true) &= present.contains(new.as_str());
    }
    paths
        .iter()
        .map(|p| old_files.get(p).copied().unwrap_or(false))
        .collect()
}

/// The query engine's view of an object-store lake: listings without replaced files (see
/// [`replaced`]); everything else is the store's.
#[derive(Debug)]
struct HideReplaced(Arc<dyn ObjectStore>);

impl std::fmt::Display for HideReplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HideReplaced({})", self.0)
    }
}

fn visible(metas: Vec<object_store::ObjectMeta>) -> Vec<object_store::ObjectMeta> {
    let paths: Vec<String> = metas.iter().map(|m| m.location.to_string()).collect();
    let hidden = replaced(&paths);
    metas
        .into_iter()
        .zip(hidden)
        .filter(|(_, h)| !h)
        .map(|(m, _)| m)
        .collect()
}

#[async_trait::async_trait]
impl ObjectStore for HideReplaced {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.0.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectPath>> {
        self.0.delete_stream(locations)
    }

    /// The whole listing is read before anything is returned: whether a file is hidden
    /// depends on markers and files anywhere in its directory.
    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        let listing = self.0.list(prefix).try_collect::<Vec<_>>();
        futures::stream::once(listing)
            .map_ok(|metas| futures::stream::iter(visible(metas).into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<object_store::ListResult> {
        let mut result = self.0.list_with_delimiter(prefix).await?;
        result.objects = visible(result.objects);
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

/// Files below `dir`, as `/`-separated paths relative to it.
fn local_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = pending.pop() {
        for entry in
            std::fs::read_dir(&path).io_context(|| format!("listing {}", path.display()))?
        {
            let entry = entry.io_context(|| format!("listing {}", path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.path().is_dir() {
                pending.push((entry.path(), child));
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Stream a local file into one object: a single PUT when small, a multipart upload (visible
/// only once completed) when large.
async fn upload_file(
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    local: &Path,
    wrap: impl FnOnce(object_store::Error) -> Error,
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::open(local)
        .await
        .io_context(|| format!("opening {}", local.display()))?;
    let mut writer = object_store::buffered::BufWriter::new(store, key);
    let copied = async {
        tokio::io::copy(&mut file, &mut writer).await?;
        writer.shutdown().await
    }
    .await;
    match copied {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = writer.abort().await;
            Err(wrap(object_store::Error::Generic {
                store: "lake",
                source: Box::new(e),
            }))
        }
    }
}

/// The store for `url`'s scheme, configured from the cloud's standard environment variables.
fn build_store(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    let wrap = |source| Error::ObjectStore {
        context: format!("opening the lake {url}"),
        source,
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(
            AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(wrap)?,
        ),
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(wrap)?,
        ),
        "az" | "azure" | "abfs" | "abfss" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(wrap)?,
        ),
        other => {
            return Err(Error::Usage(format!(
                "lake `{url}`: unsupported scheme `{other}://` (use a path, file://, s3://, gs:// or az://)"
            )))
        }
    };
    Ok(store)
}

/// A two-thread runtime owned by the lake. Work is spawned onto it and awaited from the
/// caller's thread, so this works from plain threads, rayon workers and async tasks alike.
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn new() -> Result<IoRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pulse-lake-io")
            .enable_all()
            .build()
            .io_context(|| "starting the lake's I/O runtime".to_string())?;
        Ok(IoRuntime(Some(rt)))
    }

    fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.0.as_ref().expect("runtime lives until drop");
        let handle = rt.spawn(future);
        futures::executor::block_on(handle).expect("lake I/O task panicked")
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's task panics; shutting down in the
        // background does not.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The work directory of an object-store lake: staging and the writer lock.
pub fn work_dir(url: &Url) -> PathBuf {
    std::env::temp_dir().join(format!(
        "pulse-lake-{:016x}",
        xxhash_rust::xxh3::xxh3_64(url.as_str().as_bytes())
    ))
}
