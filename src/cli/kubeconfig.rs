//! `tmc kubeconfig`: a kubeconfig for a workspace, with the admin token or
//! a client certificate issued on the spot.

use super::BoxError;
use crate::api::tls;
use std::path::PathBuf;

/// Prints a kubeconfig for a workspace.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The workspace, e.g. root:acme.
    #[arg(long, default_value = "root")]
    pub workspace: String,
    /// The directory `tmc dev` or `tmc certs` wrote.
    #[arg(long, default_value = ".tmc")]
    pub dir: PathBuf,
    /// The API's address.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub server: String,
    /// Authenticate as this user with a client certificate issued now
    /// from the directory's CA (default: the admin token).
    #[arg(long)]
    pub user: Option<String>,
    /// Groups of the certificate's user (with --user).
    #[arg(long, value_delimiter = ',', requires = "user")]
    pub group: Vec<String>,
}

impl Args {
    /// Prints the kubeconfig on stdout.
    pub fn run(self) -> Result<(), BoxError> {
        crate::store::Workspace::parse(&self.workspace)?;
        let files = tls::TlsFiles::new(&self.dir);
        if !files.exist() {
            return Err(format!(
                "no TLS material in {} (run tmc dev or tmc certs first)",
                self.dir.display()
            )
            .into());
        }
        let text = match self.user {
            None => tls::kubeconfig(&files, &self.server, &self.workspace)?,
            Some(user) => {
                let cert = tls::issue_client_cert(&files, &user, &self.group, None)?;
                tls::cert_kubeconfig(&files, &self.server, &self.workspace, &cert, &user)?
            }
        };
        print!("{text}");
        Ok(())
    }
}
