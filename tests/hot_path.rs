//! Regression guard on the hot path: one steady-state SetWeight, from the
//! controller's recorded request bytes to the reply bytes (decode + core +
//! reply), counted two ways against `tests/hot_path_budget.toml`:
//! allocations and bytes allocated per call (a counting global allocator),
//! and instructions per call (this binary re-run under
//! `valgrind --tool=callgrind`, collecting only inside [`measured_calls`]).
//! Counts, not time: the same code gives the same numbers on a busy
//! machine, so the check cannot flake. Fails when a count exceeds its budget
//! by more than the budget's margin.
//!
//! `cargo test --test hot_path` (prints the counts). Without valgrind the
//! instruction count is skipped with a note (under `CI=true` it fails).

#[path = "hot_path/steady_set_weight.rs"]
mod steady_set_weight;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Calls measured, each counted on its own; the largest count is checked.
const CALLS: u64 = 200;
const BUDGET_FILE: &str = "tests/hot_path_budget.toml";

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn count(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged; the
// counters are atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The budget file: `key = integer` lines, `#` comments.
struct Budget {
    margin_percent: u64,
    allocations: u64,
    bytes: u64,
    instructions: u64,
}

/// The argument that makes this binary the program callgrind runs.
const CALLGRIND_CHILD: &str = "--callgrind-child";
/// Callgrind collects only inside this function (by name).
const COLLECTED: &str = "*measured_calls*";

fn read_budget(path: &Path) -> Result<Budget, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut values = std::collections::BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| {
            format!(
                "{}:{}: not `key = integer`: {line:?}",
                path.display(),
                n + 1
            )
        })?;
        let value: u64 = value.trim().parse().map_err(|e| {
            format!(
                "{}:{}: {}: not an integer ({e})",
                path.display(),
                n + 1,
                key.trim()
            )
        })?;
        values.insert(key.trim().to_string(), value);
    }
    let mut take = |key: &str| {
        values.remove(key).ok_or_else(|| {
            format!(
                "{}: no `{key}` (it has: {:?})",
                path.display(),
                values.keys().collect::<Vec<_>>()
            )
        })
    };
    let budget = Budget {
        margin_percent: take("margin_percent")?,
        allocations: take("allocations_per_call")?,
        bytes: take("allocated_bytes_per_call")?,
        instructions: take("instructions_per_call")?,
    };
    if let Some(unknown) = values.keys().next() {
        return Err(format!("{}: unknown key `{unknown}`", path.display()));
    }
    Ok(budget)
}

/// The calls callgrind counts: nothing else runs inside this function.
#[inline(never)]
fn measured_calls(hot: &mut steady_set_weight::HotPath, calls: u64) -> Result<(), String> {
    for _ in 0..calls {
        hot.call()?;
    }
    Ok(())
}

/// Run by callgrind: the same preparation and warm-up, then the measured
/// calls.
fn callgrind_child() -> ExitCode {
    let result = steady_set_weight::HotPath::prepare().and_then(|mut hot| {
        for _ in 0..10 {
            hot.call()?;
        }
        measured_calls(&mut hot, CALLS)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hot_path (under callgrind): {e}");
            ExitCode::FAILURE
        }
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Instructions per call, by callgrind; `Ok(None)` when valgrind is not
/// installed outside CI.
fn instructions_per_call() -> Result<Option<u64>, String> {
    let installed = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        if in_ci() {
            return Err("CI=true and valgrind is not installed (apt install valgrind)".into());
        }
        println!(
            "hot_path: instruction count SKIPPED: valgrind is not installed; install it (apt \
             install valgrind) to check instructions_per_call"
        );
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|e| format!("this test's binary: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let out_file = dir.path().join("callgrind.out");
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--toggle-collect={COLLECTED}"))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(&exe)
        .arg(CALLGRIND_CHILD)
        .output()
        .map_err(|e| format!("running valgrind: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "valgrind --tool=callgrind {} {CALLGRIND_CHILD} failed ({}):\n{}",
            exe.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let profile =
        std::fs::read_to_string(&out_file).map_err(|e| format!("{}: {e}", out_file.display()))?;
    let total: u64 = profile
        .lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or(line.strip_prefix("summary:"))
        })
        .and_then(|n| n.trim().parse().ok())
        .ok_or("no totals line in callgrind's output")?;
    if total == 0 {
        return Err(format!(
            "callgrind counted nothing inside {COLLECTED}: the function was not found"
        ));
    }
    Ok(Some((total + CALLS / 2) / CALLS))
}

/// Allocations and bytes of each measured call.
fn measure() -> Result<Vec<(u64, u64)>, String> {
    let mut hot = steady_set_weight::HotPath::prepare()?;
    // A few unmeasured calls: anything lazily built on first use is built.
    for _ in 0..10 {
        hot.call()?;
    }
    let mut counts = Vec::with_capacity(CALLS as usize);
    for _ in 0..CALLS {
        ALLOCATIONS.store(0, Ordering::SeqCst);
        BYTES.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        let result = hot.call();
        COUNTING.store(false, Ordering::SeqCst);
        result?;
        counts.push((
            ALLOCATIONS.load(Ordering::SeqCst),
            BYTES.load(Ordering::SeqCst),
        ));
    }
    Ok(counts)
}

/// Over budget when `measured > budget * (100 + margin) / 100`.
fn check(what: &str, measured: u64, budget: u64, margin: u64) -> Option<String> {
    let limit = budget * (100 + margin) / 100;
    (measured > limit).then(|| {
        format!(
            "{what}: {measured} per call, over the budget {budget} (+{margin}% = {limit}) by {:.1}%",
            (measured as f64 / budget.max(1) as f64 - 1.0) * 100.0
        )
    })
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == CALLGRIND_CHILD) {
        return callgrind_child();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(BUDGET_FILE);
    let budget = match read_budget(&path) {
        Ok(budget) => budget,
        Err(e) => {
            println!("hot_path: FAIL: {e}");
            return ExitCode::FAILURE;
        }
    };
    let counts = match measure() {
        Ok(counts) => counts,
        Err(e) => {
            println!("hot_path: FAIL: the steady-state SetWeight did not run: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The largest call counts: a budget holds for every call.
    let allocations = counts.iter().map(|c| c.0).max().unwrap_or(0);
    let bytes = counts.iter().map(|c| c.1).max().unwrap_or(0);
    let fewest = counts.iter().map(|c| c.0).min().unwrap_or(0);
    let least = counts.iter().map(|c| c.1).min().unwrap_or(0);
    println!(
        "hot_path: steady-state SetWeight (decode + core + reply), {CALLS} calls: \
         {allocations} allocations, {bytes} bytes allocated per call (fewest {fewest}, \
         least {least}); budget {} allocations, {} bytes (+{}%) in {BUDGET_FILE}",
        budget.allocations, budget.bytes, budget.margin_percent
    );
    // The instruction budget is for the unoptimised test profile.
    let counted = if cfg!(debug_assertions) {
        instructions_per_call()
    } else {
        println!(
            "hot_path: instruction count not checked: the budget is for the test profile \
             (`cargo test`), this is an optimised build"
        );
        Ok(None)
    };
    let instructions = match counted {
        Ok(n) => n,
        Err(e) => {
            println!("hot_path: FAIL: instruction count: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(n) = instructions {
        println!(
            "hot_path: steady-state SetWeight under callgrind, mean of {CALLS} calls: {n} \
             instructions per call; budget {} (+{}%)",
            budget.instructions, budget.margin_percent
        );
    }
    let over: Vec<String> = [
        check(
            "allocations",
            allocations,
            budget.allocations,
            budget.margin_percent,
        ),
        check(
            "allocated bytes",
            bytes,
            budget.bytes,
            budget.margin_percent,
        ),
        instructions.and_then(|n| {
            check(
                "instructions",
                n,
                budget.instructions,
                budget.margin_percent,
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !over.is_empty() {
        println!("hot_path: FAIL: {}", over.join("; "));
        println!(
            "hot_path: if the increase is intended, set the budget in {BUDGET_FILE} to the \
             measured counts and say why in the commit message"
        );
        return ExitCode::FAILURE;
    }
    let margin = budget.margin_percent.min(100);
    let well_below = |measured: u64, limit: u64| measured * 100 < limit * (100 - margin);
    if well_below(allocations, budget.allocations)
        || well_below(bytes, budget.bytes)
        || instructions.is_some_and(|n| well_below(n, budget.instructions))
    {
        println!(
            "hot_path: note: below the budget by more than {}%; lower the budget in {BUDGET_FILE} \
             to the measured counts so a later regression is caught",
            budget.margin_percent
        );
    }
    println!("hot_path: PASS");
    ExitCode::SUCCESS
}
