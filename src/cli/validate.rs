//! `p4fabric validate -f fabric.yaml`: checks a file without touching etcd.

use std::path::PathBuf;

use crate::config::document::Document;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The fabric YAML file.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<()> {
    let doc = Document::read(&args.file)?;
    report(&doc)?;
    println!("{}: valid ({} keys)", doc.path.display(), doc.raw.len());
    Ok(())
}

/// Prints the problems of `doc` and fails if there are any.
pub fn report(doc: &Document) -> anyhow::Result<()> {
    for p in &doc.problems {
        eprintln!("{p}");
    }
    if doc.problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{}: {} problem(s) found",
            doc.path.display(),
            doc.problems.len()
        )
    }
}
