//! The reliability harness in its short form (see tests/src/chaos.rs and
//! `cargo run -p ionflux-tests --bin chaos -- --long` for the long one):
//! every scenario on SQLite and on PostgreSQL must end with `lost=0`.
//!
//! The scenarios run one after another in one test: they start and kill
//! processes, restart a database server and take a broker away, and must
//! not overlap. PostgreSQL runs are skipped only outside CI when the server
//! package is missing.

use ionflux_tests::chaos::{self, Backend, Plan, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_scenario_loses_nothing_on_both_backends() {
    let plan = Plan::short();
    let mut reports = Vec::new();
    for backend in Backend::ALL {
        if backend == Backend::Postgres && !postgres_available() {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the PostgreSQL scenarios (apt package postgresql)"
            );
            eprintln!("postgresql is not installed: PostgreSQL scenarios skipped");
            continue;
        }
        for scenario in Scenario::ALL {
            if !scenario.applies_to(backend) {
                continue;
            }
            let report = chaos::run(scenario, backend, &plan)
                .await
                .unwrap_or_else(|e| panic!("{} on {}: {e:#}", scenario.name(), backend.name()));
            println!("{report}");
            reports.push(report);
        }
    }
    for r in &reports {
        assert!(r.passed(), "{r}");
    }
}

fn postgres_available() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some())
}
