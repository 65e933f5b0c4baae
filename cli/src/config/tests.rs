use std::time::Duration;

use super::*;

fn pd_args() -> PdArgs {
    PdArgs {
        id: Some(1),
        members: Some("1=127.0.0.1:2379".into()),
        common: CommonFlags { data_dir: Some("/tmp/pd".into()), ..CommonFlags::default() },
        ..PdArgs::default()
    }
}

fn pd(toml: &str, args: &PdArgs) -> Result<PdSetup, String> {
    let mut file: PdFile = toml::from_str(toml).map_err(|e| e.to_string())?;
    overlay_pd(&mut file, args)?;
    resolve_pd(&file)
}

fn store(toml: &str, args: &StoreArgs) -> Result<StoreSetup, String> {
    let mut file: StoreFile = toml::from_str(toml).map_err(|e| e.to_string())?;
    overlay_store(&mut file, args)?;
    resolve_store(&file)
}

#[test]
fn durations_and_sizes_parse_with_units() {
    assert_eq!("100ms".parse::<Dur>().unwrap().0, Duration::from_millis(100));
    assert_eq!("30s".parse::<Dur>().unwrap().0, Duration::from_secs(30));
    assert_eq!("2m".parse::<Dur>().unwrap().0, Duration::from_secs(120));
    assert_eq!("0".parse::<Dur>().unwrap().0, Duration::ZERO);
    assert!("100".parse::<Dur>().unwrap_err().contains("unit"));
    assert!("fast".parse::<Dur>().is_err());
    assert_eq!("64MiB".parse::<Size>().unwrap().0, 64 << 20);
    assert_eq!("4096".parse::<Size>().unwrap().0, 4096);
    assert_eq!("2G".parse::<Size>().unwrap().0, 2 << 30);
    assert!("3 parsecs".parse::<Size>().unwrap_err().contains("unknown unit"));
    assert_eq!(parse_cpu_list("0,2-4").unwrap(), vec![0, 2, 3, 4]);
    assert!(parse_cpu_list("3-1").is_err());
}

#[test]
fn a_pd_file_is_read_and_flags_override_it() {
    let text = r#"
        id = 2
        members = ["1=127.0.0.1:2379", "2=127.0.0.1:2380", "3=127.0.0.1:2381"]
        data_dir = "/var/lib/ekv/pd"
        status_addr = "auto"
        log_level = "debug"
        check_interval = "50ms"
        [raft]
        tick_interval = "200ms"
        election_ticks = 20
        [storage]
        wal_segment_bytes = "16MiB"
        [limits]
        max_value = "1MiB"
        max_pending_proposals = 100
        [schedule]
        max_used_ratio = 0.95
        replicas = 5
    "#;
    let s = pd(text, &PdArgs::default()).unwrap();
    let m = &s.member;
    assert_eq!(m.id, 2);
    assert_eq!(m.members.len(), 3);
    assert_eq!(m.data_dir, PathBuf::from("/var/lib/ekv/pd"));
    assert_eq!(m.engine.tick_interval, Duration::from_millis(200));
    assert_eq!(m.engine.election_ticks, 20);
    assert_eq!(m.engine.hibernate_after_ticks, 40, "follows election_ticks");
    assert_eq!(m.engine.wal_segment_bytes, 16 << 20);
    assert_eq!(m.engine.max_pending_proposals, 100);
    assert_eq!(m.limits.max_value, 1 << 20);
    assert_eq!(m.settings.max_used_ratio, 0.95);
    assert_eq!(m.settings.replicas, 5);
    assert_eq!(m.settings.down_after_ms, Settings::default().down_after_ms, "unset keys keep defaults");
    assert_eq!(m.check_interval, Duration::from_millis(50));
    assert_eq!(s.status_addr, Some("127.0.0.1:2480".parse().unwrap()));
    assert_eq!(s.log_level.as_deref(), Some("debug"));

    let flags = PdArgs {
        id: Some(3),
        raft: RaftFlags { election_ticks: Some(30), ..RaftFlags::default() },
        schedule: vec!["max_used_ratio=0.5".into(), "replicas=3".into()],
        common: CommonFlags {
            data_dir: Some("/elsewhere".into()),
            status_addr: Some(StatusAddr::Off),
            ..CommonFlags::default()
        },
        ..PdArgs::default()
    };
    let s = pd(text, &flags).unwrap();
    assert_eq!(s.member.id, 3);
    assert_eq!(s.member.engine.election_ticks, 30);
    assert_eq!(s.member.engine.tick_interval, Duration::from_millis(200), "the file's value stays");
    assert_eq!(s.member.settings.max_used_ratio, 0.5);
    assert_eq!(s.member.settings.replicas, 3);
    assert_eq!(s.member.data_dir, PathBuf::from("/elsewhere"));
    assert_eq!(s.status_addr, None);
}

#[test]
fn flags_alone_make_a_pd() {
    let s = pd("", &pd_args()).unwrap();
    assert_eq!(s.member.members, vec![(1, "127.0.0.1:2379".to_owned())]);
    assert_eq!(s.member.engine.tick_interval, EngineConfig::default().tick_interval);
    assert_eq!(s.member.settings, Settings::default());
    assert_eq!(s.status_addr, None, "off by default");
    let relative = PdArgs {
        common: CommonFlags { data_dir: Some("rel/pd".into()), ..CommonFlags::default() },
        ..pd_args()
    };
    let s = pd("", &relative).unwrap();
    assert!(
        s.member.data_dir.is_absolute() && s.member.data_dir.ends_with("rel/pd"),
        "{:?}",
        s.member.data_dir
    );
}

#[test]
fn bad_pd_settings_are_named() {
    let err = |toml: &str, args: &PdArgs| pd(toml, args).unwrap_err();
    assert!(err("", &PdArgs::default()).contains("member id is required"));
    assert!(err("", &PdArgs { id: Some(4), ..pd_args() }).contains("member 4 is not in the member list"));
    assert!(err("", &PdArgs { members: Some("1=127.0.0.1:1,1=127.0.0.1:2".into()), ..pd_args() })
        .contains("listed twice"));
    assert!(err("", &PdArgs { members: Some("1=nohost".into()), ..pd_args() }).contains("not host:port"));
    assert!(
        err("", &PdArgs { members: Some("x=127.0.0.1:1".into()), ..pd_args() }).contains("not a member id")
    );
    let no_dir = PdArgs { common: CommonFlags::default(), ..pd_args() };
    assert!(err("", &no_dir).contains("data_dir is required"));
    assert!(err("bogus = 1", &pd_args()).contains("unknown field `bogus`"));
    assert!(err("[raft]\ntick_interval = 100", &pd_args()).contains("needs a unit"));
    assert!(err("[raft]\nelection_ticks = 2\nheartbeat_ticks = 2", &pd_args()).contains("election_ticks"));
    assert!(err("[raft]\nlease_ticks = 10", &pd_args()).contains("lease_ticks"));
    assert!(err("[raft]\nelection_ticks = 20\nhibernate_after_ticks = 30", &pd_args()).contains("hibernate"));
    let short = pd("[raft]\nelection_ticks = 5", &pd_args()).unwrap();
    assert_eq!(short.member.engine.lease_ticks, 3, "follows election_ticks");
    assert!(err("[schedule]\nmax_used_ratio = 1.5", &pd_args()).contains("max_used_ratio"));
    assert!(err("[schedule]\nreplica = 3", &pd_args()).contains("unknown setting \"replica\""));
    assert!(err("[schedule]\nreplicas = \"three\"", &pd_args()).contains("schedule"));
    assert!(err("[limits]\nmax_frame_body = 1024", &pd_args()).contains("max_frame_body"));
    assert!(err("[limits]\nmax_bogus = 1", &pd_args()).contains("max_bogus"));
    assert!(err("", &PdArgs { cpu: Some(4096), ..pd_args() }).contains("CPU 4096 is not online"));
    let bad_kv = PdArgs { schedule: vec!["replicas".into()], ..pd_args() };
    assert!(err("", &bad_kv).contains("KEY=VALUE"));
    let same_port = PdArgs {
        common: CommonFlags { status_addr: Some("127.0.0.1:2379".parse().unwrap()), ..pd_args().common },
        ..pd_args()
    };
    assert!(err("", &same_port).contains("own port"));
}

fn store_args() -> StoreArgs {
    StoreArgs {
        pd: Some("127.0.0.1:2379".into()),
        common: CommonFlags { data_dir: Some("/tmp/s".into()), ..CommonFlags::default() },
        ..StoreArgs::default()
    }
}

#[test]
fn a_store_file_is_read_and_flags_override_it() {
    let text = r#"
        pd = ["127.0.0.1:2379", "127.0.0.1:2380"]
        data_dir = "/var/lib/ekv/store"
        listen = "0.0.0.0:20160"
        advertise = "127.0.0.1:20160"
        shards = 2
        cpus = [0]
        status_addr = "auto"
        join_wait = "1m"
        [raft]
        pd_heartbeat_ticks = 100
        [storage]
        lsm_block_cache_bytes = "1GiB"
        [limits]
        max_frame_body = "32MiB"
    "#;
    let s = store(text, &StoreArgs::default()).unwrap();
    let n = &s.node;
    assert_eq!(n.pd_endpoints.len(), 2);
    assert_eq!(n.listen, "0.0.0.0:20160".parse().unwrap());
    assert_eq!(n.advertise.as_deref(), Some("127.0.0.1:20160"));
    assert_eq!(n.engine.shard_count(), 2);
    assert_eq!(n.engine.cpus, vec![0]);
    assert_eq!(n.engine.pd_heartbeat_ticks, 100);
    assert_eq!(n.engine.lsm_block_cache_bytes, 1 << 30);
    assert_eq!(n.limits.max_frame_body, 32 << 20);
    assert_eq!(n.join_wait, Duration::from_secs(60));
    assert_eq!(s.status_addr, Some("0.0.0.0:20260".parse().unwrap()));

    let flags = StoreArgs {
        listen: Some("127.0.0.1:30000".into()),
        shards: Some(1),
        cpus: Some("0".into()),
        max_pending_proposals: Some(10),
        raft: RaftFlags { tick_interval: Some(Dur(Duration::from_millis(10))), ..RaftFlags::default() },
        ..StoreArgs::default()
    };
    let s = store(text, &flags).unwrap();
    assert_eq!(s.node.listen, "127.0.0.1:30000".parse().unwrap());
    assert_eq!(s.node.engine.shard_count(), 1);
    assert_eq!(s.node.engine.max_pending_proposals, 10);
    assert_eq!(s.node.engine.tick_interval, Duration::from_millis(10));
    assert_eq!(s.node.engine.pd_heartbeat_ticks, 100);
    assert_eq!(s.status_addr, Some("127.0.0.1:30100".parse().unwrap()));
}

#[test]
fn bad_store_settings_are_named() {
    let err = |toml: &str, args: &StoreArgs| store(toml, args).unwrap_err();
    assert!(err("", &StoreArgs { pd: None, ..store_args() }).contains("meta service is required"));
    assert!(
        err("", &StoreArgs { listen: Some("0.0.0.0:20160".into()), ..store_args() }).contains("advertise")
    );
    assert!(err("", &StoreArgs { listen: Some("localhost".into()), ..store_args() }).contains("not ip:port"));
    assert!(err("", &StoreArgs { shards: Some(0), ..store_args() }).contains("shards must be at least 1"));
    assert!(err("", &StoreArgs { cpus: Some("0,0".into()), ..store_args() }).contains("listed twice"));
    assert!(err("", &StoreArgs { cpus: Some("a".into()), ..store_args() }).contains("CPU list"));
    let clash = StoreArgs {
        shards: Some(2),
        common: CommonFlags { status_addr: Some("127.0.0.1:20161".parse().unwrap()), ..store_args().common },
        ..store_args()
    };
    assert!(err("", &clash).contains("collides"));
    assert!(err("shards = \"two\"", &store_args()).contains("invalid type"));
    assert!(err("status_addr = \"here\"", &store_args()).contains("status address"));
    assert!(err("", &StoreArgs { listen: Some("127.0.0.1:65535".into()), shards: Some(2), ..store_args() })
        .contains("do not fit"));
}

#[test]
fn the_deploy_examples_are_valid() {
    let read = |name: &str| {
        let path = format!("{}/../deploy/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let mut pd_file: PdFile = toml::from_str(&read("pd.toml")).expect("deploy/pd.toml parses");
    pd_file.cpu = None; // this machine may have fewer CPUs
    let pd = resolve_pd(&pd_file).expect("deploy/pd.toml is valid");
    assert_eq!(pd.member.members.len(), 3);
    assert_eq!(pd.status_addr, Some("10.0.0.1:2479".parse().unwrap()));
    let mut store_file: StoreFile = toml::from_str(&read("store.toml")).expect("deploy/store.toml parses");
    assert_eq!(store_file.cpus.as_ref().map(Vec::len), Some(6));
    store_file.cpus = None;
    let store = resolve_store(&store_file).expect("deploy/store.toml is valid");
    assert_eq!(store.status_addr, Some("10.0.0.1:20260".parse().unwrap()));
    assert_eq!(store.node.engine.pd_heartbeat_ticks, 100);
}
