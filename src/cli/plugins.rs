//! `unitscope plugins`: every plugin file found, and what became of it.

use anyhow::Result;
use unitscope::plugin;

use super::outln;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON: [{"path", "name", "kind", "version", "abi", "about", "status"}].
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let rows: Vec<[String; 6]> = plugin::reports()
        .iter()
        .map(|r| match &r.outcome {
            Ok(p) => [
                p.name.clone(),
                p.kind.to_owned(),
                p.version.clone(),
                format!("{}.{}", p.abi.0, p.abi.1),
                p.status(),
                format!("{} — {}", r.path.display(), p.about),
            ],
            Err(why) => [
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                format!("not loaded: {why}"),
                r.path.display().to_string(),
            ],
        })
        .collect();
    if args.json {
        let rows: Vec<_> = plugin::reports()
            .iter()
            .zip(&rows)
            .map(|(r, [name, kind, version, abi, status, _])| {
                let about = r.outcome.as_ref().map(|p| p.about.as_str()).ok();
                serde_json::json!({
                    "path": r.path, "name": name, "kind": kind, "version": version,
                    "abi": abi, "about": about, "status": status,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        outln!(
            "no plugins found (looked beside the binary, in $XDG_DATA_HOME/unitscope/plugins, \
             and in what --plugin names)"
        );
        return Ok(());
    }
    let name_width = rows.iter().map(|r| r[0].len()).max().unwrap_or(4).max(4);
    outln!(
        "{:<name_width$}  {:<8}  {:<8}  {:<3}  {:<6}  path",
        "name",
        "kind",
        "version",
        "abi",
        "status"
    );
    for [name, kind, version, abi, status, path] in &rows {
        outln!("{name:<name_width$}  {kind:<8}  {version:<8}  {abi:<3}  {status:<6}  {path}");
    }
    Ok(())
}
