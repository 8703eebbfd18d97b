//! `harness check-config`: a filter's configuration checked by the filter itself. Each file
//! is given to the compiled module as its plugin configuration, the way Envoy gives it;
//! the answer is the module's `on_configure` and the lines it logged at warn or above.

use crate::host::world::LEVELS;
use crate::host::{Plugin, Proxy, Setup};
use crate::scenario::run::DEFAULT_START_S;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Lines at this level or above explain a refusal (`warn`).
const EXPLAINING_LEVEL: u32 = 3;

/// What the filter made of one configuration.
pub struct Checked {
    pub accepted: bool,
    /// The filter's lines at warn or above, `[level] message`.
    pub lines: Vec<String>,
}

/// The VM's environment from `--env` arguments: `NAME=VALUE` as given (Envoy's
/// `key_values`), `NAME` alone from this process's environment when it is set there
/// (`host_env_keys`: Envoy skips a name it does not have).
pub fn environment(args: &[String]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|arg| match arg.split_once('=') {
            Some((name, value)) => Some((name.to_string(), value.to_string())),
            None => std::env::var(arg).ok().map(|value| (arg.clone(), value)),
        })
        .collect()
}

/// Configures `plugin` with `config` (one main VM, one worker) in a VM with environment
/// `env`, as Envoy would.
pub fn check(plugin: &Plugin, config: &[u8], env: &[(String, String)]) -> Result<Checked> {
    let setup = Setup {
        workers: 1,
        plugin_config: config.to_vec(),
        verify_signature: true,
        start_ms: DEFAULT_START_S * 1000,
        env: env.to_vec(),
        ..Setup::default()
    };
    let proxy = Proxy::start(plugin, setup)?;
    let world = proxy.world.borrow();
    let lines = world
        .logs
        .iter()
        .filter(|l| l.level >= EXPLAINING_LEVEL)
        .map(|l| format!("[{}] {}", LEVELS[l.level as usize], l.message))
        .collect();
    Ok(Checked {
        accepted: proxy.configured,
        lines,
    })
}

/// Checks every file (`-` is standard input), prints `FILE: ok` or `FILE: refused` with the
/// filter's explanation, and returns whether all were accepted.
pub fn check_files(wasm: &Path, files: &[PathBuf], env: &[(String, String)]) -> Result<bool> {
    let plugin = Plugin::load(wasm)?;
    let mut all = true;
    for file in files {
        let config = if file.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            bytes
        } else {
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
        };
        let checked = check(&plugin, &config, env)?;
        if checked.accepted {
            println!("{}: ok", file.display());
        } else {
            all = false;
            println!("{}: refused", file.display());
        }
        for line in &checked.lines {
            println!("  {line}");
        }
    }
    Ok(all)
}
