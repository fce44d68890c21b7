//! `switchyard inspect`: asks the running server; when none answers and no process holds
//! `data_dir`, opens it directly and checks every record.

use hyper::Method;

use super::{Target, client};
use crate::inspect::{self, Report};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Output format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    format: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let t = args.target.resolve()?;
    let auth = t.token.as_ref().map(|tok| format!("Bearer {tok}"));
    let report: Report = match client::call(
        Method::GET,
        &format!("{}/api/v1/inspect", t.url),
        auth.as_deref(),
        None,
    )
    .await
    {
        Ok(resp) if resp.status.is_success() => serde_json::from_slice(&resp.body)?,
        Ok(resp) => anyhow::bail!(
            "{} answered {}: {}",
            t.url,
            resp.status,
            String::from_utf8_lossy(&resp.body)
        ),
        Err(e) if client::is_unreachable(&e) => offline(&t)?,
        Err(e) => return Err(e),
    };
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

fn offline(t: &super::Resolved) -> anyhow::Result<Report> {
    if !t.data_dir.join("log").exists() {
        anyhow::bail!(
            "no server answers at {} and {} holds no log",
            t.url,
            t.data_dir.display()
        );
    }
    let _lock = crate::app::lock_data_dir(&t.data_dir)
        .map_err(|e| anyhow::anyhow!("no server answers at {}, and {e}", t.url))?;
    eprintln!(
        "no server answers at {}; reading {} directly",
        t.url,
        t.data_dir.display()
    );
    let destinations: Vec<(String, Option<String>)> = match &t.config {
        Some(c) => c
            .destinations
            .iter()
            .map(|d| (d.id.clone(), None))
            .collect(),
        None => cursor_ids(&t.data_dir),
    };
    let mut report = inspect::report(&t.data_dir, &destinations, None)?;
    let store_path = t.data_dir.join("deliveries.redb");
    if store_path.exists() {
        let store = crate::delivery::store::DeliveryStore::open(&store_path)?;
        report.add_delivery_counts(&store);
    }
    let profiles_path = t.data_dir.join("profiles.redb");
    if profiles_path.exists() {
        let store = crate::profiles::ProfileStore::open(&profiles_path)?;
        report.add_profiles(&store);
    }
    Ok(report)
}

fn cursor_ids(data_dir: &std::path::Path) -> Vec<(String, Option<String>)> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("cursors")) else {
        return Vec::new();
    };
    let mut ids: Vec<_> = dir
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(|s| (s.to_owned(), None))
        })
        .collect();
    ids.sort();
    ids
}
