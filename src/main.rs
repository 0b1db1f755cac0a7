//! The `loka-stratum` command: raw flags become a validated [`Config`] in one
//! step, then one verb runs. Errors print their whole chain and exit non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argh::FromArgs;
use loka_stratum::config::{BindAddr, Config, ConfigError, EXAMPLE, HostPort, Plain};
use loka_stratum::daemon;
use loka_stratum::store::Day;
use loka_stratum::store::control::{self, Asked};
use loka_stratum::store::db::Books;
use loka_stratum::store::integrity;
use loka_stratum::store::writer::{self, Command};

#[derive(FromArgs)]
/// loka-stratum: a small Stratum V1 mining proxy for home-mining gateways.
struct Cli {
    /// config file (TOML); without it, built-in defaults and LOKA_* variables
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// more logging: -v debug, -vv trace (RUST_LOG overrides)
    #[argh(switch, short = 'v')]
    verbose: u8,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    verb: Option<Verb>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Verb {
    Start(Start),
    Status(Status),
    Workers(Workers),
    Earnings(Earnings),
    Distribute(Distribute),
    Distributions(Distributions),
    Books(BooksVerb),
    Config(CheckConfig),
    Init(Init),
}

#[derive(FromArgs)]
/// Show each worker's shares for a day, from the books.
#[argh(subcommand, name = "workers")]
struct Workers {
    /// the day, YYYY-MM-DD (default: today)
    #[argh(option)]
    date: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
/// Record or list a pool's daily rewards.
#[argh(subcommand, name = "earnings")]
struct Earnings {
    #[argh(subcommand)]
    action: Option<EarningsAction>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum EarningsAction {
    Add(EarningsAdd),
    List(EarningsList),
}

#[derive(FromArgs)]
/// Record a pool's reward for a day.
#[argh(subcommand, name = "add")]
struct EarningsAdd {
    /// the day, YYYY-MM-DD
    #[argh(option)]
    date: String,
    /// the reward in satoshis
    #[argh(option)]
    reward: u64,
    /// the pool's name (default: pool.name)
    #[argh(option)]
    pool: Option<String>,
    /// the hashrate the pool reported, hashes per second
    #[argh(option)]
    hashrate: Option<f64>,
}

#[derive(FromArgs)]
/// List recorded rewards.
#[argh(subcommand, name = "list")]
struct EarningsList {}

#[derive(FromArgs)]
/// Split a day's reward among workers by accepted difficulty, store and print it.
#[argh(subcommand, name = "distribute")]
struct Distribute {
    /// the day, YYYY-MM-DD
    #[argh(option)]
    date: Option<String>,
    /// the pool's name (default: pool.name)
    #[argh(option)]
    pool: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
/// List stored distributions.
#[argh(subcommand, name = "distributions")]
struct Distributions {
    /// only this day, YYYY-MM-DD
    #[argh(option)]
    date: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
/// Check the books, or copy them to a backup.
#[argh(subcommand, name = "books")]
struct BooksVerb {
    #[argh(subcommand)]
    action: Option<BooksAction>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum BooksAction {
    Check(BooksCheck),
    Backup(BooksBackup),
}

#[derive(FromArgs)]
/// Check the books' integrity and invariants; exit non-zero on a problem.
#[argh(subcommand, name = "check")]
struct BooksCheck {
    /// a books file to check (default: the books, through the daemon if it runs)
    #[argh(positional)]
    file: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Write a checked copy of the books to FILE, running or not.
#[argh(subcommand, name = "backup")]
struct BooksBackup {
    /// where to write it (replaced only by a sound copy)
    #[argh(positional)]
    file: PathBuf,
}

#[derive(FromArgs)]
/// Show a running daemon's pool, connections and workers.
#[argh(subcommand, name = "status")]
struct Status {
    /// the daemon's metrics endpoint (default: from the config's metrics.bind_address)
    #[argh(option)]
    url: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
/// Run the proxy.
#[argh(subcommand, name = "start")]
struct Start {
    /// stratum listen address, ip:port (overrides server.bind_address)
    #[argh(option, short = 'b')]
    bind: Option<String>,
    /// pool address, host:port (overrides pool.address)
    #[argh(option, short = 'p')]
    pool: Option<String>,
    /// pool account that logins are rewritten to (overrides pool.username)
    #[argh(option, short = 'u')]
    username: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
/// Validate a config file; --show prints the effective settings.
#[argh(subcommand, name = "config")]
struct CheckConfig {
    /// the file to check
    #[argh(positional)]
    file: Option<PathBuf>,
    /// print the effective settings (file, then environment, then defaults)
    #[argh(switch)]
    show: bool,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

#[derive(FromArgs)]
/// Write a commented example config.
#[argh(subcommand, name = "init")]
struct Init {
    /// where to write it (refuses to overwrite)
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

const VERSION: &str = concat!("loka-stratum ", env!("CARGO_PKG_VERSION"));

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    let asked_version = cli.version
        || match &cli.verb {
            Some(Verb::Start(s)) => s.version,
            Some(Verb::Status(s)) => s.version,
            Some(Verb::Workers(w)) => w.version,
            Some(Verb::Earnings(e)) => e.version,
            Some(Verb::Distribute(d)) => d.version,
            Some(Verb::Distributions(d)) => d.version,
            Some(Verb::Books(b)) => b.version,
            Some(Verb::Config(c)) => c.version,
            Some(Verb::Init(i)) => i.version,
            None => false,
        };
    if asked_version {
        println!("{VERSION}");
        return ExitCode::SUCCESS;
    }
    let journald = init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                msg.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            // Under journald at error priority, so `journalctl -p err` shows
            // why the service would not start.
            if journald {
                eprint!("{}", loka_stratum::journal::format_for_journal(log::Level::Error, msg));
            } else {
                eprintln!("{msg}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Sets up `log`; whether stderr goes to journald.
fn init_logging(verbose: u8) -> bool {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    // Under systemd: no timestamps (journald adds them), and <N> priority
    // prefixes so journald keeps each line's level.
    let journald = loka_stratum::journal::under_journald();
    if journald {
        builder.format(|buf, record| loka_stratum::journal::write_record(buf, record.level(), record.args()));
    } else {
        builder.format(loka_stratum::journal::write_terminal_record);
    }
    builder.init();
    journald
}

type BoxError = Box<dyn std::error::Error>;

fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.verb {
        None => Err("no verb given; try `loka-stratum start` or `loka-stratum --help`".into()),
        Some(Verb::Start(start)) => {
            let config = settings(cli.config.as_deref(), &start)?;
            daemon::run(config)?;
            Ok(())
        }
        Some(Verb::Status(status)) => {
            let url = match status.url {
                Some(url) => url,
                None => loka_stratum::status::local_url(load(cli.config.as_deref())?.metrics.bind_address.0),
            };
            print!("{}", loka_stratum::status::status(&url)?);
            Ok(())
        }
        Some(Verb::Workers(w)) => books(cli.config.as_deref(), Command::Workers(day(w.date)?)),
        Some(Verb::Earnings(e)) => match e.action {
            None => Err("earnings: say `add` or `list`".into()),
            Some(EarningsAction::List(_)) => books(cli.config.as_deref(), Command::EarningsList),
            Some(EarningsAction::Add(a)) => {
                let day = day(Some(a.date))?.ok_or("earnings add: --date is required")?;
                if a.hashrate.is_some_and(|h| !h.is_finite() || h < 0.0) {
                    return Err("earnings add: --hashrate must be a non-negative number".into());
                }
                let pool = pool_name(a.pool)?;
                books(
                    cli.config.as_deref(),
                    Command::EarningsAdd { day, pool, reward: a.reward, hashrate: a.hashrate },
                )
            }
        },
        Some(Verb::Distribute(d)) => {
            let day = day(d.date)?.ok_or("distribute: --date YYYY-MM-DD is required")?;
            books(cli.config.as_deref(), Command::Distribute { day, pool: pool_name(d.pool)? })
        }
        Some(Verb::Distributions(d)) => books(cli.config.as_deref(), Command::Distributions(day(d.date)?)),
        Some(Verb::Books(b)) => match b.action {
            None => Err("books: say `check` or `backup FILE`".into()),
            Some(BooksAction::Check(BooksCheck { file: None })) => {
                books(cli.config.as_deref(), Command::Check)
            }
            Some(BooksAction::Check(BooksCheck { file: Some(file) })) => {
                let settlement = daemon::books_setting(&load(cli.config.as_deref())?).settlement;
                print!("{}", integrity::check_file(&file, settlement)?.verdict()?);
                Ok(())
            }
            Some(BooksAction::Backup(b)) => backup(cli.config.as_deref(), &b.file),
        },
        Some(Verb::Config(check)) => {
            let file = check.file.ok_or("config: name the file to check, e.g. `loka-stratum config /etc/loka-stratum/loka-stratum.toml`")?;
            let config = load(Some(&file))?;
            if check.show {
                print!("{}", config.to_toml());
            } else {
                println!("{}: ok", file.display());
            }
            Ok(())
        }
        Some(Verb::Init(init)) => {
            use std::io::Write;
            let output = init.output.ok_or("init: name the file to write with -o FILE")?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&output)
                .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
            file.write_all(EXAMPLE.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            println!("wrote {}", output.display());
            Ok(())
        }
    }
}

fn day(text: Option<String>) -> Result<Option<Day>, BoxError> {
    Ok(text.map(|t| t.parse::<Day>()).transpose()?)
}

fn pool_name(name: Option<String>) -> Result<Option<String>, BoxError> {
    match name {
        Some(n) if n.is_empty() || n.chars().any(|c| !c.is_ascii_graphic()) => {
            Err(format!("--pool {n:?}: a pool name is printable ASCII without spaces").into())
        }
        other => Ok(other),
    }
}

/// Runs a books command through the running daemon, or on the file itself
/// when no daemon answers on the control socket.
fn books(path: Option<&Path>, command: Command) -> Result<(), BoxError> {
    let config = load(path)?;
    let socket = control::socket_path(&config.store.path);
    let text = match control::ask(&socket, &command)
        .map_err(|e| format!("control socket {}: {e}", socket.display()))?
    {
        Asked::Answer(answer) => answer?,
        Asked::NotRunning => {
            if !config.store.path.exists() {
                return Err(format!(
                    "no books at {}: the daemon has not run with this store.path yet (set it with -c FILE or LOKA_STORE_PATH)",
                    config.store.path.display()
                )
                .into());
            }
            let setting = daemon::books_setting(&config);
            if command == Command::Check {
                // As the file is: a check migrates no layout.
                integrity::check_file(&config.store.path, setting.settlement)?.verdict()?
            } else {
                writer::execute(&mut Books::open(&config.store.path, setting)?, &command)?
            }
        }
    };
    print!("{text}");
    Ok(())
}

/// `books backup FILE`: a copy from the running daemon (as of a commit of
/// everything queued), or of the file under its lock when none runs;
/// written beside FILE, checked, then renamed over it.
fn backup(path: Option<&Path>, dest: &Path) -> Result<(), BoxError> {
    use std::os::unix::fs::MetadataExt;
    let config = load(path)?;
    if let Ok(there) = std::fs::metadata(dest) {
        let books = std::fs::metadata(&config.store.path).ok();
        if books.is_some_and(|b| (b.dev(), b.ino()) == (there.dev(), there.ino())) {
            return Err(format!(
                "books backup: {} is the books themselves; name another file",
                dest.display()
            )
            .into());
        }
        if !there.is_file() {
            return Err(format!("books backup: {} is not a regular file", dest.display()).into());
        }
    }
    let socket = control::socket_path(&config.store.path);
    let fetched =
        control::fetch_backup(&socket).map_err(|e| format!("control socket {}: {e}", socket.display()))?;
    let (image, source) = match fetched {
        Some(answer) => (answer?, "the running daemon"),
        None => (integrity::read_locked(&config.store.path)?, "the file (no daemon running)"),
    };
    let report = integrity::write_backup(dest, &image, daemon::books_setting(&config).settlement)?;
    println!("backup: {} bytes from {source} written to {}", image.len(), dest.display());
    print!("{}", report.verdict()?);
    Ok(())
}

/// Defaults, then the file, then the environment, validated.
fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let config = Config::load(path, std::env::vars())?;
    config.validate()?;
    Ok(config)
}

/// Settings for `start`: [`load`] plus the flags, which win.
fn settings(path: Option<&Path>, start: &Start) -> Result<Config, ConfigError> {
    let mut config = Config::load(path, std::env::vars())?;
    let flag =
        |name: &'static str| move |message: String| ConfigError::Override { name: name.into(), message };
    if let Some(bind) = &start.bind {
        config.server.bind_address = bind.parse::<BindAddr>().map_err(flag("--bind"))?;
    }
    if let Some(pool) = &start.pool {
        config.pool.address = pool.parse::<HostPort>().map_err(flag("--pool"))?;
    }
    if let Some(user) = &start.username {
        config.pool.username = user.parse::<Plain>().map_err(flag("--username"))?;
    }
    config.validate()?;
    Ok(config)
}
