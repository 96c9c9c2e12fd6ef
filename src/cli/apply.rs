//! `p4fabric apply -f fabric.yaml [--prune]`: validates the file (and the
//! configuration it would produce together with what etcd already holds),
//! then writes every changed key in ONE etcd transaction.

use std::path::PathBuf;

use super::EtcdArgs;
use crate::config::apply::{self, ApplyError};
use crate::config::document::Document;
use crate::config::store::StoreError;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The fabric YAML file.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Also delete configuration keys that are not in the file.
    #[arg(long)]
    pub prune: bool,
    /// Show what would change, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub async fn run(args: &ApplyArgs) -> anyhow::Result<()> {
    let doc = Document::read(&args.file)?;
    super::validate::report(&doc)?;
    let store = args.etcd.connect().await?;
    let applied = match apply::apply(&store, &doc, args.prune, args.dry_run).await {
        Ok(a) => a,
        Err(e) => {
            if let ApplyError::Invalid {
                problems,
                already_rejected,
            } = &e
            {
                for e in already_rejected {
                    eprintln!("warning: already rejected in etcd: {e}");
                }
                for e in problems {
                    eprintln!("{e}");
                }
            }
            let hint = match &e {
                ApplyError::Store(s) if s.to_string().contains("too many operations") => {
                    " (etcd limits one transaction to --max-txn-ops, 128 by default)"
                }
                ApplyError::Store(StoreError::Conflict) => " (run apply again)",
                _ => "",
            };
            anyhow::bail!("{e}{hint}");
        }
    };
    for e in &applied.already_rejected {
        eprintln!("warning: already rejected in etcd: {e}");
    }
    let p = &applied.plan;
    for (mark, keys) in [("+", &p.added), ("~", &p.changed), ("-", &p.removed)] {
        for k in keys {
            println!("{mark} {k}");
        }
    }
    println!(
        "{}added {}, changed {}, removed {}, unchanged {}{}",
        if args.dry_run { "dry run: " } else { "" },
        p.added.len(),
        p.changed.len(),
        p.removed.len(),
        p.unchanged.len(),
        applied
            .revision
            .map(|r| format!(" (revision {r})"))
            .unwrap_or_default()
    );
    Ok(())
}
