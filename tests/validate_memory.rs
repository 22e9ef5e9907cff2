//! Memory of `simulate` and `validate` follows the objects the Rollout
//! names, not the size of the input: a guard on heap bytes (counted, not
//! timed). The measured numbers for 50 MB of manifests are in the README.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use istio_router::simulate::{Output, Scenario, run};
use istio_router::validate::{self, Input, Manifests};

/// Counts live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new) };
        if !q.is_null() {
            let live = LIVE.fetch_add(new, Ordering::Relaxed) + new;
            PEAK.fetch_max(live, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes above what was live before, at the peak of `f`.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// `count` VirtualServices and ConfigMaps the Rollout does not name.
fn unrelated(count: usize) -> String {
    (0..count)
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

/// Heap bytes (above the input text itself) that reading, validating and
/// simulating cost with `objects` beside the Rollout.
fn cost(objects: &str) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inputs = inputs(objects);
    let (problems, peak) = peak_during(|| {
        let manifests = Manifests::index(inputs);
        let options = validate::Options {
            plugin_name: None,
            controller: istio_router::controller::LATEST_CHECKED,
        };
        let problems = runtime.block_on(validate::check(&manifests, &options));
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
