//! The wasmtime embedding: engine, pool, CPU ticker, compiled-code cache,
//! linker and the per-call store. Application rules about what a guest may
//! return live in `output`; this file only knows how to run a guest safely.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig,
    ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::world::{self, Level, World};
use super::{Event, Input, Limits, LoadError, RuntimeConfig, TransformError, output};

/// Enough for a panic message and a few lines of context; the guest gets a
/// closed stream after that, not a trap.
const STDERR_CAPACITY: usize = 4096;
/// Longest guest log message kept, in bytes.
const LOG_MESSAGE_MAX: usize = 1024;
/// Longest reason kept from a guest's `invalid-input` or `failed`, in bytes.
const REASON_MAX: usize = 1024;
/// Budget per component for pool sizing. A Rust `wasm32-wasip2` component
/// has a handful of core instances (the program plus adapter shims) and one
/// or two memories and tables; these leave head room without letting one
/// odd component take a large share of the pool.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;
/// Guest memory (and tables) kept mapped between calls, which avoids page
/// faults, `madvise` and the TLB shootdowns that come with it on the hot
/// path, without leaking data: a slot is always reset. With `PAGEMAP_SCAN`
/// (Linux 6.7+) only the pages a call dirtied are reset, so keeping more
/// resident costs nothing for small guests; without it, this much is
/// zeroed per call. Measured: a fresh shopify-default instance went from
/// 52 µs (1 MiB, no scan) to 16 µs (BENCHMARKS.md).
const MEMORY_KEEP_RESIDENT: usize = 4 << 20;
/// Slots whose memory must be given back are decommitted this many at a
/// time: one TLB shootdown across cores per batch instead of per call.
const DECOMMIT_BATCH: usize = 32;
/// Tries at instantiating while the pool reports itself full (see
/// [`RuntimeInner::instantiate`]); the waits between them double from
/// 50 µs, some 50 ms in all, far longer than a decommit batch takes.
const POOL_BUSY_TRIES: u32 = 10;
/// Budget for the trial instantiation at load: generous, since the first
/// instantiation of new code may fault in pages, but still bounded.
const TRIAL_CPU: Duration = Duration::from_secs(1);
/// The WASI clocks version wasmtime-wasi 48 links; used to shadow sleeping.
const WASI_MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Loads transforms. Cheap to clone; the engine, its pool and its ticker
/// thread live as long as the last clone or the last [`Transform`].
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<CallState>,
    cache_dir: Option<PathBuf>,
    /// Hex digest of everything that makes compiled code from this engine
    /// usable (wasmtime version, target, settings); part of cache file
    /// names so an upgrade never picks up stale artifacts.
    compat: String,
    epoch_tick: Duration,
    max_memory_bytes: usize,
    slots: Slots,
    _ticker: Ticker,
}

/// A loaded transform version. Cheap to clone and to share across threads.
#[derive(Clone)]
pub struct Transform {
    inner: Arc<TransformInner>,
}

struct TransformInner {
    name: Arc<str>,
    digest: Arc<str>,
    /// Through the bindings of the world the component implements.
    pre: world::Pre,
    from_cache: bool,
    log_buckets: Arc<LogBuckets>,
    // Keeps the ticker running (and the pool alive) while this transform is
    // usable, even if every `Runtime` handle is gone.
    runtime: Arc<RuntimeInner>,
}

/// Guest log lines a workspace may emit through one transform version:
/// a burst, then a steady rate. On top of the per-call cap, so a flood spread
/// over many webhooks is bounded too, and one tenant's flood never eats
/// another tenant's allowance (or the host's log pipeline).
const LOG_BURST: f64 = 200.0;
const LOG_LINES_PER_SEC: f64 = 50.0;

#[derive(Default)]
struct LogBuckets {
    by_workspace: Mutex<std::collections::HashMap<String, (f64, Instant)>>,
}

impl LogBuckets {
    fn take(&self, workspace_id: &str) -> bool {
        let mut map = self.by_workspace.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = map
            .entry(workspace_id.to_owned())
            .or_insert((LOG_BURST, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * LOG_LINES_PER_SEC).min(LOG_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Runtime {
    pub fn new(cfg: RuntimeConfig) -> Result<Self, LoadError> {
        if cfg.epoch_tick.is_zero() {
            return Err(LoadError::Engine("epoch_tick must be above zero".into()));
        }
        if cfg.pool_instances == 0 {
            return Err(LoadError::Engine(
                "pool_instances must be above zero".into(),
            ));
        }

        let mut pool = PoolingAllocationConfig::default();
        let n = cfg.pool_instances;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
            .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
            .total_stacks(n)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_memory_size(cfg.max_memory_bytes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(MEMORY_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);

        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .wasm_component_model(true);
        // `perf record` then names guest functions (from /tmp/perf-PID.map)
        // instead of showing anonymous JIT addresses.
        if std::env::var_os("IONFLUX_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;

        let linker = build_linker(&engine).map_err(|e| LoadError::Engine(format!("{e:#}")))?;

        if let Some(dir) = &cfg.cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| LoadError::Cache(format!("creating {}: {e}", dir.display())))?;
        }

        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = hex::encode(&hasher.0.finalize()[..8]);

        let ticker = Ticker::start(engine.clone(), cfg.epoch_tick)
            .map_err(|e| LoadError::Engine(format!("starting the epoch ticker: {e}")))?;

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache_dir: cfg.cache_dir,
                compat,
                epoch_tick: cfg.epoch_tick,
                max_memory_bytes: cfg.max_memory_bytes,
                slots: Slots::new(cfg.pool_instances),
                _ticker: ticker,
            }),
        })
    }

    /// Compiles `bytes` (or loads the compiled artifact from the cache),
    /// reads which `transform` world it implements, checks it against that
    /// world and prepares instantiation.
    /// Slow on a cache miss (tens of milliseconds to seconds): call it from
    /// a blocking context.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Transform, LoadError> {
        let rt = &self.inner;
        check_component_header(bytes)?;
        let digest = super::digest(bytes);

        let (component, from_cache) = rt.compile(&digest, bytes)?;

        // The world first: a component of an unknown version would fail to
        // link too, but its export names say why.
        let world = World::of(&rt.engine, &component)?;
        let instance_pre = rt
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre = world::Pre::new(world, instance_pre)?;
        let inner = TransformInner {
            name: name.into(),
            digest: digest.into(),
            pre,
            from_cache,
            log_buckets: Arc::default(),
            runtime: rt.clone(),
        };
        rt.trial_instantiate(&inner)?;

        tracing::debug!(transform = name, digest = %inner.digest, from_cache, %world,
            "transform loaded");
        Ok(Transform {
            inner: Arc::new(inner),
        })
    }
}

impl Runtime {
    /// Drops a deleted version's compiled code from this replica's disk
    /// cache. Other replicas keep theirs until an operator clears the
    /// cache; nothing runs it any more (deletion needs it unrouted).
    pub fn evict_cached(&self, digest: &str) {
        let rt = &self.inner;
        // Only ever a digest: never a path of someone's choosing.
        let is_digest = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        let Some(dir) = rt.cache_dir.as_ref().filter(|_| is_digest) else {
            return;
        };
        let path = dir.join(format!("{digest}-{}.cwasm", rt.compat));
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!(path = %path.display(), "compiled transform evicted"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "could not remove a deleted transform's compiled code"),
        }
    }
}

impl RuntimeInner {
    /// A fresh store for one instance, with every limit armed. The CPU
    /// deadline is set before instantiation so start functions count too.
    fn new_store(
        &self,
        stderr: &MemoryOutputPipe,
        memory_bytes: usize,
        cpu: Duration,
        config: &str,
        log: GuestLog,
    ) -> Store<CallState> {
        let state = CallState {
            // No preopens, env, args, network or host stdio: the guest only
            // gets clocks, random, an empty stdin, a discarded stdout and a
            // stderr we keep.
            wasi: WasiCtxBuilder::new().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes.min(self.max_memory_bytes)),
            config: config.to_owned(),
            log,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(cpu, self.epoch_tick));
        store.epoch_deadline_trap();
        store
    }

    /// Instantiates `pre` in a store from `new_store`, a fresh one per try.
    ///
    /// `slots` admits no more live instances than the pool holds, yet the
    /// pool can still refuse one: a slot another call just gave back may sit
    /// in a decommit batch that its thread is flushing, neither free nor
    /// queued where this thread's retry looks. That refusal lasts as long as
    /// the flush, so it is waited out rather than turned into a dead letter
    /// (or a rejected upload).
    fn instantiate(
        &self,
        pre: &world::Pre,
        mut new_store: impl FnMut() -> Store<CallState>,
    ) -> (Store<CallState>, wasmtime::Result<world::Instance>) {
        let mut wait = Duration::from_micros(50);
        for _ in 1..POOL_BUSY_TRIES {
            let mut store = new_store();
            match pre.instantiate(&mut store) {
                Err(e) if e.chain().any(|e| e.is::<PoolConcurrencyLimitError>()) => {
                    drop(store);
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                result => return (store, result),
            }
        }
        let mut store = new_store();
        let result = pre.instantiate(&mut store);
        (store, result)
    }

    /// Type-checking does not catch everything that makes instantiation
    /// fail (more memories or instances than a pool slot holds, a start
    /// function that traps). Finding out at upload beats dead-lettering
    /// every webhook routed to the component.
    fn trial_instantiate(&self, transform: &TransformInner) -> Result<(), LoadError> {
        let _slot = self.slots.acquire();
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let (_store, result) = self.instantiate(&transform.pre, || {
            let log = GuestLog::new(transform, "", "", 0);
            self.new_store(&stderr, usize::MAX, TRIAL_CPU, "{}", log)
        });
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(LoadError::WrongWorld(format!(
                "the component can not be instantiated in the sandbox: {e:#}"
            ))),
        }
    }

    fn compile(&self, digest: &str, bytes: &[u8]) -> Result<(Component, bool), LoadError> {
        let compile_err = |e: wasmtime::Error| LoadError::Compile(format!("{e:#}"));
        let Some(dir) = &self.cache_dir else {
            return Ok((
                Component::from_binary(&self.engine, bytes).map_err(compile_err)?,
                false,
            ));
        };

        let path = dir.join(format!("{digest}-{}.cwasm", self.compat));
        // Read into memory rather than `deserialize_file`: a mapped file
        // that someone truncates or rewrites in place (a cache cleaner, an
        // operator) would kill the whole process with SIGBUS. Loads are
        // rare, so the extra copy is cheap insurance.
        match std::fs::read(&path) {
            Ok(artifact) => {
                // SAFETY: the artifact is native code that wasmtime trusts.
                // It is named by the sha256 of the component and this
                // engine's compatibility hash and was written by
                // `precompile_component` of an identical engine; the cache
                // directory must be writable by the operator only (see
                // `RuntimeConfig::cache_dir`). wasmtime still checks the
                // header and the engine settings recorded in it.
                match unsafe { Component::deserialize(&self.engine, &artifact) } {
                    Ok(component) => return Ok((component, true)),
                    // A truncated or foreign file is not fatal: compile
                    // again and replace it.
                    Err(e) => tracing::warn!(
                        path = %path.display(), error = %format!("{e:#}"),
                        "discarding unusable compiled transform"
                    ),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %path.display(), error = %e,
                "could not read compiled transform; compiling again"
            ),
        }

        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(compile_err)?;
        // SAFETY: produced just above by this very engine.
        let component =
            unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(compile_err)?;
        // The cache is an optimisation: a read-only or full disk must not
        // stop transforms from loading.
        if let Err(e) = write_atomically(&path, &artifact) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled transform");
        }
        Ok((component, false))
    }
}

/// The preamble is `\0asm`, a 16-bit version and a 16-bit layer: 0 for a
/// core module, 1 for a component. Telling the two apart up front gives a
/// useful message instead of a parser error.
fn check_component_header(bytes: &[u8]) -> Result<(), LoadError> {
    match bytes {
        [b'\0', b'a', b's', b'm', _, _, 1, 0, ..] => Ok(()),
        [b'\0', b'a', b's', b'm', _, _, 0, 0, ..] => Err(LoadError::NotAComponent(
            "this is a core WebAssembly module; build for wasm32-wasip2 \
             or wrap it with `wasm-tools component new`"
                .into(),
        )),
        _ => Err(LoadError::NotAComponent(
            "the bytes do not start with a WebAssembly component preamble".into(),
        )),
    }
}

/// Write to a unique temporary name in the same directory, then rename: a
/// concurrent loader or a crash never sees a half-written artifact.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Feeds `Hash` output into sha256, which (unlike `DefaultHasher`) is
/// stable across Rust releases.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only the sha256 digest is read")
    }
}

fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    // Rust's wasm32-wasip2 std imports WASI (stderr for panics, clocks,
    // random, ...) even when the program uses none of it. The context in
    // each store is empty, so linking it grants nothing.
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // The sync WASI poll blocks the calling thread, where the epoch deadline
    // can not interrupt it: a guest sleeping for an hour would hold a pool
    // slot and a thread for an hour. Sleeping is not part of the contract
    // (see wit/transform.wit), so a request to sleep traps instead.
    linker.allow_shadowing(true);
    let mut clock = linker.instance(WASI_MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            wasmtime::bail!("transforms may not sleep")
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            wasmtime::bail!("transforms may not sleep")
        },
    )?;
    linker.allow_shadowing(false);
    world::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Advances the engine's epoch every tick, which is what makes a running
/// guest hit its deadline. Stops when dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch-ticker".into())
            .spawn(move || {
                // Ticks are counted against the clock, not per wake-up: on a
                // busy machine the thread oversleeps, and without catching
                // up every deadline would stretch by the same factor.
                let mut next = Instant::now() + tick;
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    // A disconnected channel is the stop signal.
                    if let Err(mpsc::RecvTimeoutError::Disconnected) = stopped.recv_timeout(wait) {
                        return;
                    }
                    let now = Instant::now();
                    while next <= now {
                        engine.increment_epoch();
                        next += tick;
                    }
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts free pool slots, so that callers beyond `pool_instances` wait
/// instead of failing with a pool-exhausted error that would wrongly send a
/// webhook to the dead letters.
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(n: u32) -> Self {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

impl Transform {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Lowercase hex sha256 of the component bytes: the version's identity.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// The version of the contract the component implements.
    pub fn world(&self) -> World {
        self.inner.pre.world()
    }

    /// Whether the compiled code came from the disk cache.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// Runs one webhook through a fresh instance. Blocking (run it in
    /// `spawn_blocking`); waits for a free pool slot if all are busy.
    pub fn call(
        &self,
        input: &Input<'_>,
        config: &str,
        limits: &Limits,
    ) -> Result<Vec<Event>, TransformError> {
        let rt = &self.inner.runtime;
        let slot = rt.slots.acquire();

        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let (mut store, instance) = rt.instantiate(&self.inner.pre, || {
            let log = GuestLog::new(
                &self.inner,
                input.workspace_id,
                input.brand_id,
                limits.log_lines,
            );
            rt.new_store(&stderr, limits.memory_bytes, limits.cpu, config, log)
        });

        let result = instance.map_err(|e| (e, true)).and_then(|instance| {
            instance
                .transform(&mut store, input)
                .map_err(|e| (e, false))
        });

        store.data().log.finish();
        let memory_refused = store.data().limiter.refused;
        // Validation below is plain Rust: give the pool slot back first.
        drop(store);
        drop(slot);

        match result {
            Ok(Ok(events)) => output::validate(events, limits, input.body.len()),
            // The reason ends up in a dead-letter record: keep it bounded.
            Ok(Err(TransformError::InvalidInput(why))) => {
                Err(TransformError::InvalidInput(truncate(why, REASON_MAX)))
            }
            Ok(Err(TransformError::Failed(why))) => {
                Err(TransformError::Failed(truncate(why, REASON_MAX)))
            }
            Ok(Err(other)) => Err(other),
            Err((error, instantiating)) => Err(classify(
                &error,
                instantiating,
                memory_refused,
                limits,
                &stderr,
            )),
        }
    }
}

/// ceil(cpu / tick), at least one tick.
pub(super) fn deadline_ticks(cpu: Duration, tick: Duration) -> u64 {
    let ticks = cpu.as_nanos().div_ceil(tick.as_nanos()).max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Turns whatever wasmtime reported into the reason a webhook is dead
/// lettered. Order matters: a guest that ran out of memory usually dies of
/// an `unreachable` trap (Rust aborts on allocation failure), and one that
/// was interrupted may have been refused memory earlier.
fn classify(
    error: &wasmtime::Error,
    instantiating: bool,
    memory_refused: bool,
    limits: &Limits,
    stderr: &MemoryOutputPipe,
) -> TransformError {
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return TransformError::Timeout(limits.cpu);
    }
    if memory_refused {
        return TransformError::MemoryLimit(limits.memory_bytes);
    }
    let mut message = if let Some(trap) = error.downcast_ref::<Trap>() {
        trap.to_string()
    } else if let Some(exit) = error.downcast_ref::<I32Exit>() {
        format!("guest exited with status {}", exit.0)
    } else {
        // Host-side failures (a refused WASI call, a pool limit, ...): the
        // innermost message is the one that says what happened.
        error.root_cause().to_string()
    };
    let stderr = stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        let _ = write!(message, "; stderr: {stderr}");
    }
    if instantiating {
        TransformError::Instantiate(message)
    } else {
        TransformError::Trap(message)
    }
}

/// Everything one call's store holds. Dropped with the store at the end of
/// the call.
pub(super) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    config: String,
    log: GuestLog,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory cap of one call, over all of its linear memories together: a
/// component has one memory per core instance that defines one, and
/// wasmtime asks about each memory's growth alone, so a per-memory cap would
/// let a component with N memories use N times its cap. Remembers whether
/// it ever said no, so that the trap a guest dies of after a refused
/// `memory.grow` is reported as what it is.
///
/// Tables are left to `StoreLimits` and the pool: their elements are
/// pointers in slots the pool reserves up front, bounded per table by its
/// configuration, not by anything a guest grows into host memory.
struct MemoryLimiter {
    limits: StoreLimits,
    /// Bytes of every memory of this store together, as granted.
    total: usize,
    cap: usize,
    refused: bool,
}

impl MemoryLimiter {
    fn new(memory_bytes: usize) -> Self {
        MemoryLimiter {
            limits: StoreLimitsBuilder::new().memory_size(memory_bytes).build(),
            total: 0,
            cap: memory_bytes,
            refused: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A memory's first call (at instantiation) has `current` 0; after
        // that `current` is what was granted to it before. Memories never
        // shrink and live as long as the store, so the sum only grows.
        let growth = desired.saturating_sub(current);
        let total = self.total.saturating_add(growth);
        let allowed = total <= self.cap && self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.total = total;
        }
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Also reached when the pool slot (`max_memory_bytes`) is full. The
        // growth counted above did not happen; counting it anyway only
        // errs towards refusing, and the guest rarely survives this.
        self.refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Guest logging, rate limited per call and tagged with tenant and
/// transform so an operator can tell whose guest said what.
struct GuestLog {
    workspace_id: String,
    brand_id: String,
    transform: Arc<str>,
    digest: Arc<str>,
    budget: u32,
    emitted: u32,
    dropped: u64,
    buckets: Arc<LogBuckets>,
}

macro_rules! guest_event {
    ($level:expr, $log:expr, $message:expr) => {
        tracing::event!(
            target: "ionflux::guest",
            $level,
            workspace_id = %$log.workspace_id,
            brand_id = %$log.brand_id,
            transform = %$log.transform,
            digest = %$log.digest,
            "{}",
            $message
        )
    };
}

impl GuestLog {
    fn new(transform: &TransformInner, workspace_id: &str, brand_id: &str, budget: u32) -> Self {
        GuestLog {
            workspace_id: workspace_id.to_owned(),
            brand_id: brand_id.to_owned(),
            transform: transform.name.clone(),
            digest: transform.digest.clone(),
            budget,
            emitted: 0,
            dropped: 0,
            buckets: transform.log_buckets.clone(),
        }
    }

    fn emit(&mut self, level: Level, message: &str) {
        if self.emitted >= self.budget || !self.buckets.take(&self.workspace_id) {
            self.dropped += 1;
            return;
        }
        self.emitted += 1;
        let message = sanitize(message);
        match level {
            Level::Trace => guest_event!(tracing::Level::TRACE, self, message),
            Level::Debug => guest_event!(tracing::Level::DEBUG, self, message),
            Level::Info => guest_event!(tracing::Level::INFO, self, message),
            Level::Warn => guest_event!(tracing::Level::WARN, self, message),
            Level::Error => guest_event!(tracing::Level::ERROR, self, message),
        }
    }

    fn finish(&self) {
        if self.dropped > 0 {
            guest_event!(
                tracing::Level::WARN,
                self,
                format_args!(
                    "{} guest log lines dropped (limit {} per call, {} per second per workspace)",
                    self.dropped, self.budget, LOG_LINES_PER_SEC
                )
            );
        }
    }
}

/// At most 1 KiB, on a char boundary, with control characters escaped so a
/// guest can not forge extra lines in a text log.
pub(super) fn sanitize(message: &str) -> String {
    let end = floor_char_boundary(message, LOG_MESSAGE_MAX);
    let kept = &message[..end];
    let mut out = String::with_capacity(kept.len() + 3);
    for c in kept.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if end < message.len() {
        out.push('…');
    }
    out
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        s.truncate(floor_char_boundary(&s, max));
        s.push('…');
    }
    s
}

/// The largest index `<= max` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// What the host imports of every world do (`world` maps each world's
/// types onto these).
impl CallState {
    pub(super) fn guest_log(&mut self, level: Level, message: &str) {
        self.log.emit(level, message);
    }

    pub(super) fn route_config(&self) -> String {
        self.config.clone()
    }
}
