//! Memory of `simulate` and `validate` follows the objects the Rollout
//! names and the largest single input, not the size of the whole input: a
//! guard on heap bytes (counted, not timed), the input texts themselves
//! included. The measured numbers for 50 MB of manifests are in the README.

use istio_router::simulate::{Output, Scenario, run};
use std::path::PathBuf;
use test_support::heap::{self, MEASURING, peak_during};

use istio_router::validate::{self, Input, Manifests};

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

fn measuring() -> std::sync::MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Heap bytes above what was live before, after `f` (what it keeps) and
/// at its peak.
fn kept_and_peak<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let base = heap::reset_peak();
    let out = f();
    let kept = heap::live().saturating_sub(base);
    (out, kept, heap::peak().saturating_sub(base))
}

/// `count` VirtualServices and ConfigMaps the Rollout does not name.
fn unrelated(count: usize) -> String {
    unrelated_from(0, count)
}

/// [`unrelated`], numbered from `first`.
fn unrelated_from(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| {
            format!(
                "---\napiVersion: networking.istio.io/v1beta1\nkind: VirtualService\n\
                 metadata:\n  name: svc-{i}\n  namespace: shop\nspec:\n  hosts: [svc-{i}]\n  \
                 gateways: [mesh]\n  http:\n    - name: primary\n      retries: {{attempts: 3}}\n      \
                 route:\n        - destination: {{host: svc-{i}-stable}}\n          weight: 100\n        \
                 - destination: {{host: svc-{i}-canary}}\n          weight: 0\n---\napiVersion: v1\n\
                 kind: ConfigMap\nmetadata:\n  name: cfg-{i}\n  namespace: shop\ndata: {{level: info}}\n"
            )
        })
        .collect()
}

fn inputs(objects: &str) -> Vec<Input> {
    vec![
        Input {
            name: "header-route.yaml".into(),
            text: include_str!("../examples/header-route.yaml").into(),
            holds_rollouts: true,
        },
        Input {
            name: "objects.yaml".into(),
            text: objects.into(),
            holds_rollouts: false,
        },
    ]
}

/// Heap bytes that indexing (the input texts copied in included),
/// validating and simulating cost with `objects` beside the Rollout.
fn cost(objects: &str) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (problems, peak) = peak_during(|| {
        let manifests = Manifests::index(inputs(objects));
        let options = validate::Options {
            plugin_name: None,
            controller: istio_router::controller::LATEST_CHECKED,
        };
        let problems = runtime
            .block_on(validate::check(&manifests, &options))
            .problems;
        let scenario = Scenario::from_manifests(&manifests, None).expect("a scenario");
        assert_eq!(scenario.objects.len(), 1, "only the named VirtualService");
        let report = runtime
            .block_on(run(&scenario, Output::Steps))
            .expect("played");
        assert!(report.contains("fully promoted"));
        problems
    });
    assert!(problems.is_empty(), "{problems:?}");
    peak
}

/// What holding every object costs, as reading did before objects were
/// indexed lazily: every document parsed to JSON, stored in the in-memory
/// cluster, and a snapshot of it taken (one per phase, for the diff).
fn cost_of_holding_everything(objects: &str) -> usize {
    let (_, peak) = peak_during(|| {
        let documents = istio_router::yaml::documents(objects).expect("YAML");
        let cluster = istio_router::cluster::InMemoryCluster::new();
        cluster.apply(documents, "shop").expect("stored");
        let snapshot = cluster.snapshot();
        assert!(!snapshot.is_empty());
    });
    peak
}

#[test]
fn unrelated_objects_cost_a_fraction_of_holding_them() {
    let _one_at_a_time = measuring();
    let small = cost("");
    // 1000 documents: the most one file may hold (the parser's budget).
    let objects = unrelated(500);
    let large = cost(&objects);
    let extra = large.saturating_sub(small);
    let holding = cost_of_holding_everything(&objects);
    eprintln!(
        "peak heap: {small} bytes alone, +{extra} with {} bytes of unrelated manifests; \
         holding them all: {holding}",
        objects.len()
    );
    assert!(
        extra * 4 < holding,
        "unrelated manifests of {} bytes cost {extra} more heap bytes; holding them: {holding}",
        objects.len()
    );
}

/// Unrelated objects in `files` files of `per_file` pairs each, written
/// to a fresh directory beside the Rollout's file.
struct Files {
    dir: PathBuf,
    rollout: PathBuf,
    largest: usize,
    total: usize,
}

impl Files {
    fn write(name: &str, files: usize, per_file: usize) -> Self {
        let dir =
            std::env::temp_dir().join(format!("validate-memory-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).expect("temporary directory");
        let rollout = dir.join("header-route.yaml");
        std::fs::write(&rollout, include_str!("../examples/header-route.yaml")).expect("written");
        let (mut largest, mut total) = (0, 0);
        for file in 0..files {
            let text = unrelated_from(file * per_file, per_file);
            (largest, total) = (largest.max(text.len()), total + text.len());
            std::fs::write(objects.join(format!("objects-{file:03}.yaml")), text).expect("written");
        }
        Files {
            dir,
            rollout,
            largest,
            total,
        }
    }

    /// Reads and indexes them as `validate` and `simulate` do: heap bytes
    /// kept after and at the peak, every text read counted.
    fn read(&self) -> (usize, usize) {
        let (manifests, kept, peak) = kept_and_peak(|| {
            let objects = self.dir.join("objects");
            let objects = if self.total == 0 {
                &[][..]
            } else {
                std::slice::from_ref(&objects)
            };
            let (manifests, problems) =
                Manifests::read(std::slice::from_ref(&self.rollout), objects);
            assert!(problems.is_empty(), "{problems:?}");
            assert!(
                manifests.problems().is_empty(),
                "{:?}",
                manifests.problems()
            );
            let scenario = Scenario::from_manifests(&manifests, None).expect("a scenario");
            assert_eq!(scenario.objects.len(), 1, "only the named VirtualService");
            manifests
        });
        drop(manifests);
        (kept, peak)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Inputs read as text: what indexing keeps of the unrelated objects is a
/// small fraction of their text, and the peak grows with the largest
/// single input, not with their number.
#[test]
fn inputs_are_indexed_one_at_a_time_and_unrelated_text_is_dropped() {
    let _one_at_a_time = measuring();
    let alone = Files::write("alone", 0, 0);
    let one = Files::write("one", 1, 250);
    let many = Files::write("many", 16, 250);
    let (kept_alone, peak_alone) = alone.read();
    let (kept_one, peak_one) = one.read();
    let (kept_many, peak_many) = many.read();
    eprintln!(
        "kept/peak heap: {kept_alone}/{peak_alone} bytes for the Rollout alone; \
         {kept_one}/{peak_one} with 1 file of {} bytes; {kept_many}/{peak_many} with 16 files \
         ({} bytes, the largest {})",
        one.total, many.total, many.largest
    );
    // Kept: a name in the table of objects given (for "given twice" and
    // "what exists") per unrelated object, not its text; measured about 60
    // bytes per object, a quarter of the text of these small objects.
    let objects = 16 * 250 * 2;
    let kept_extra = kept_many.saturating_sub(kept_alone);
    assert!(
        kept_extra < objects * 100 && kept_extra * 3 < many.total,
        "{} bytes of unrelated manifests ({objects} objects) keep {kept_extra} heap bytes",
        many.total
    );
    // Peak: what is kept, plus one input's text and its parsing at a time.
    let one_input = peak_one.saturating_sub(kept_one);
    assert!(
        peak_many <= kept_many + one_input + many.largest / 2,
        "peak {peak_many} with 16 inputs of at most {} bytes; kept {kept_many}, \
         one input read costs {one_input} above what it keeps",
        many.largest
    );
    assert!(
        peak_many * 2 < many.total,
        "peak {peak_many} for {} bytes of input: the texts are held together",
        many.total
    );
}
