//! Loading the example plugins as the host will: from directories, through the checks,
//! and calling into the loaded code.

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use common::*;
use sfprocessor_plugin_loader::{
    duplicate_plugins, host_api_version, load_dir, load_library, plugin_kind, sha256_file, LoadError, LoadOptions,
    PluginEvent, PluginWatcher,
};
use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, RStr},
    Batch, DriverPoll, Event, FlatRecord, Header, Host, LogLevel, PluginFactory, ProcessEvent, SysFlowRecord,
};

extern "C" fn quiet_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn host() -> Host {
    Host::new(quiet_log, "test")
}

fn flat_records(n: usize) -> Vec<FlatRecord> {
    let header = RArc::new(Header::default());
    (0..n).map(|i| FlatRecord::new(header.clone(), Event::Process(ProcessEvent { tid: i as i64, ..Default::default() }))).collect()
}

fn install_all_examples(dir: &std::path::Path) {
    for (pkg, name) in EXAMPLES {
        install_example(pkg, dir, name);
    }
}

#[test]
fn example_plugins_load_with_their_names_and_kinds() {
    let plugins = private_dir();
    let work = private_dir();
    install_all_examples(plugins.path());
    fs::write(plugins.path().join("README.txt"), "not a plugin").unwrap();

    let (libs, errors) = load_dir(plugins.path(), &options_in(work.path()));
    assert!(errors.is_empty(), "{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
    let mut found: Vec<(String, &str, String)> = libs
        .iter()
        .flat_map(|l| {
            let file = l.path.file_name().unwrap().to_string_lossy().into_owned();
            l.descriptors.iter().map(move |d| (file.clone(), plugin_kind(&d.factory), d.name.to_string()))
        })
        .collect();
    found.sort();
    let expected = [
        ("example.so", "processor", "example"),
        ("ndjson.so", "driver", "ndjson"),
        ("now.so", "action", "now"),
        ("panicky.so", "processor", "panicky"),
        ("passthrough.so", "processor", "passthrough"),
        ("printer.so", "handler", "printer"),
    ];
    let expected: Vec<(String, &str, String)> =
        expected.iter().map(|(f, k, n)| (f.to_string(), *k, n.to_string())).collect();
    assert_eq!(found, expected);

    for lib in &libs {
        assert_eq!(lib.plugin_api_version, host_api_version());
        assert_eq!(lib.sha256, sha256_file(&lib.path).unwrap());
        // Another test of this process may have mapped the same content from its own runtime dir.
        assert_eq!(lib.image_path.file_name().unwrap().to_str().unwrap(), format!("{}.so", lib.sha256));
    }
}

#[test]
fn loaded_plugins_run_and_their_panics_are_caught() {
    let plugins = private_dir();
    let work = private_dir();
    install_all_examples(plugins.path());
    let (libs, errors) = load_dir(plugins.path(), &options_in(work.path()));
    assert!(errors.is_empty());
    let factory = |name: &str| {
        libs.iter().flat_map(|l| l.descriptors.iter()).find(|d| d.name.as_str() == name).unwrap().factory
    };

    // The panicking fixture: 999 records pass, the 1000th panics inside the plugin, and the
    // panic comes back as an error instead of unwinding into the host.
    let PluginFactory::Processor { new, .. } = factory("panicky") else { panic!("panicky is not a processor") };
    let mut panicky = new(RStr::from("{}"), host()).unwrap();
    let out = panicky.process(Batch::flat(flat_records(999))).unwrap();
    assert_eq!(out.map(|b| b.len()).into_option(), Some(999));
    let err = panicky.process(Batch::flat(flat_records(1))).unwrap_err();
    assert!(err.panicked, "{err}");
    assert!(err.message.contains("deliberate panic on record 1000"), "{err}");

    // The action adds its tag.
    let PluginFactory::Action { new, .. } = factory("now") else { panic!("now is not an action") };
    let now = new(host()).unwrap();
    let mut record = flat_records(1).pop().unwrap();
    now.apply(&mut record).unwrap();
    let tag = record.context.tags[0].as_str();
    let nanos: u128 = tag.strip_prefix("now_in_nanos:").expect(tag).parse().expect(tag);
    assert!(nanos > 1_600_000_000_000_000_000, "{tag}");

    // The example processor hands on the very batch it got (zero copy).
    let PluginFactory::Processor { new, .. } = factory("example") else { panic!("example is not a processor") };
    let mut example = new(RStr::from("{}"), host()).unwrap();
    let batch = Batch::flat(flat_records(3));
    let Batch::Flat(sent) = &batch else { unreachable!() };
    let sent_ptr = sent.as_ptr();
    let Some(Batch::Flat(got)) = example.process(batch.clone()).unwrap().into_option() else { panic!("no output") };
    assert_eq!(got.as_ptr(), sent_ptr);
    assert!(example.counters().iter().any(|c| c.name == "process_events" && c.value == 3));

    // A bad handler configuration is refused with the key named.
    let PluginFactory::Handler { new } = factory("printer") else { panic!("printer is not a handler") };
    let Err(err) = new(RStr::from(r#"{"printer.types":"PE,BOGUS"}"#), host()).into_result() else {
        panic!("a bad printer.types was accepted")
    };
    assert!(err.message.contains("printer.types") && err.message.contains("BOGUS"), "{err}");

    // The driver reads NDJSON and starts with a header.
    let input = work.path().join("in.ndjson");
    fs::write(&input, "{\"type\":\"PE\",\"procOID\":{\"createTS\":1,\"hpid\":2},\"ts\":5}\n").unwrap();
    let PluginFactory::Driver { new, .. } = factory("ndjson") else { panic!("ndjson is not a driver") };
    let config = format!("{{\"path\":{:?}}}", input.to_str().unwrap());
    let mut driver = new(RStr::from(config.as_str()), host()).unwrap();
    let DriverPoll::Batch(Batch::SysFlow(records)) = driver.poll(100).unwrap() else { panic!("no batch") };
    assert!(matches!(records[0], SysFlowRecord::Header(_)));
    assert!(matches!(&records[1], SysFlowRecord::Event(Event::Process(pe)) if pe.ts == 5 && pe.proc_oid.hpid == 2));
    assert!(matches!(driver.poll(100).unwrap(), DriverPoll::End));
}

#[test]
fn overwriting_the_original_does_not_touch_the_loaded_image() {
    let plugins = private_dir();
    let work = private_dir();
    let path = install_example("printer-handler", plugins.path(), "printer.so");
    let lib = load_library(&path, &options_in(work.path())).unwrap();
    // What an operator's `cp` over the installed file does: rewrite it in place.
    fs::write(&path, b"garbage overwriting the original in place").unwrap();
    let PluginFactory::Handler { new } = lib.descriptors[0].factory else { panic!("not a handler") };
    let mut printer = new(RStr::from("{}"), host()).unwrap();
    let out = printer.handle(flat_records(2).into()).unwrap();
    assert_eq!(out.map(|r| r.len()).into_option(), Some(2));
}

#[test]
fn world_writable_files_and_directories_are_refused() {
    let plugins = private_dir();
    let work = private_dir();
    let path = install_example("passthrough", plugins.path(), "passthrough.so");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let err = load_library(&path, &options_in(work.path())).unwrap_err();
    assert!(matches!(err, LoadError::InsecurePermissions { mode: 0o666, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("0666"), "{msg}");

    let allowed = LoadOptions { allow_insecure_permissions: true, ..options_in(work.path()) };
    assert!(load_library(&path, &allowed).is_ok());

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(plugins.path(), fs::Permissions::from_mode(0o775)).unwrap();
    let err = load_library(&path, &options_in(work.path())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&plugins.path().display().to_string()) && msg.contains("0775"), "{msg}");
}

#[test]
fn files_owned_by_another_user_are_refused() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: changing a file's owner needs root");
        return;
    }
    let plugins = private_dir();
    let work = private_dir();
    let path = install_example("passthrough", plugins.path(), "passthrough.so");
    std::os::unix::fs::chown(&path, Some(12345), None).unwrap();
    let err = load_library(&path, &options_in(work.path())).unwrap_err();
    assert!(matches!(err, LoadError::BadOwner { owner: 12345, .. }), "{err:?}");
    assert!(err.to_string().contains("uid 12345"), "{err}");
}

#[test]
fn garbage_is_not_a_plugin() {
    let plugins = private_dir();
    let work = private_dir();
    let junk = plugins.path().join("junk.so");
    fs::write(&junk, b"this is not an ELF file").unwrap();
    fs::set_permissions(&junk, fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_library(&junk, &options_in(work.path())).unwrap_err();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("junk.so is not a sysflow plugin library"), "{msg}");
    assert!(!msg.contains('\n'), "one line for the log: {msg}");

    let dir_as_file = plugins.path().join("dir.so");
    fs::create_dir(&dir_as_file).unwrap();
    fs::set_permissions(&dir_as_file, fs::Permissions::from_mode(0o755)).unwrap();
    let err = load_library(&dir_as_file, &options_in(work.path())).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");

    let err = load_library(&plugins.path().join("absent.so"), &options_in(work.path())).unwrap_err();
    assert!(err.to_string().contains("absent.so"), "{err}");
}

#[test]
fn a_missing_directory_loads_nothing() {
    let work = private_dir();
    let (libs, errors) = load_dir(&work.path().join("no-such-dir"), &options_in(work.path()));
    assert!(libs.is_empty() && errors.is_empty());
}

#[test]
fn two_libraries_offering_the_same_plugin_are_reported_with_both_files() {
    let plugins = private_dir();
    let work = private_dir();
    let a = install_example("passthrough", plugins.path(), "a.so");
    let b = install_example("passthrough", plugins.path(), "b.so");
    install_example("now-action", plugins.path(), "now.so");
    let (libs, errors) = load_dir(plugins.path(), &options_in(work.path()));
    assert!(errors.is_empty());
    assert_eq!(libs.len(), 3);
    let dups = duplicate_plugins(&libs);
    assert_eq!(dups.len(), 1, "{dups:?}");
    assert_eq!((dups[0].kind, dups[0].name.as_str()), ("processor", "passthrough"));
    assert_eq!((dups[0].first.as_path(), dups[0].second.as_path()), (a.as_path(), b.as_path()));
    let msg = dups[0].to_string();
    assert!(msg.contains("a.so") && msg.contains("b.so") && msg.contains("'passthrough'"), "{msg}");
}

fn next_change(watcher: &PluginWatcher, within: Duration) -> Option<PluginEvent> {
    watcher.events().recv_timeout(within).ok()
}

#[test]
fn the_watcher_reports_content_changes_once_and_ignores_same_content() {
    let plugins = private_dir();
    let target = plugins.path().join("plugin.so");
    install_example("passthrough", plugins.path(), "plugin.so");
    let watcher = PluginWatcher::new(&[plugins.path().to_path_buf(), plugins.path().join("missing")], Duration::from_millis(300))
        .unwrap();
    assert_eq!(watcher.unwatched(), &[plugins.path().join("missing")]);

    // Same content copied over the file: nothing to reload.
    fs::copy(example_so("passthrough"), &target).unwrap();
    assert_eq!(next_change(&watcher, Duration::from_millis(1200)), None);

    // A new build written in several chunks: one event, after the writes settle.
    let new_build = fs::read(example_so("now-action")).unwrap();
    let started = Instant::now();
    {
        use std::io::Write;
        let mut f = fs::File::create(&target).unwrap();
        for chunk in new_build.chunks(new_build.len() / 4 + 1) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let event = next_change(&watcher, Duration::from_secs(5)).expect("a change event");
    assert!(started.elapsed() >= Duration::from_millis(300), "reported before the debounce interval");
    let canonical = target.canonicalize().unwrap();
    assert_eq!(event, PluginEvent::Changed { path: canonical.clone(), sha256: sha256_file(&target).unwrap() });
    assert_eq!(next_change(&watcher, Duration::from_millis(800)), None, "one burst, one event");

    // Rename into place (how installers replace a file atomically).
    let staging = plugins.path().join(".plugin.so.tmp");
    fs::copy(example_so("printer-handler"), &staging).unwrap();
    fs::rename(&staging, &target).unwrap();
    let event = next_change(&watcher, Duration::from_secs(5)).expect("a change event after rename");
    assert!(matches!(&event, PluginEvent::Changed { path, .. } if *path == canonical), "{event:?}");

    // What the host loaded is what it told the watcher: no event for it.
    fs::copy(example_so("passthrough"), &staging).unwrap();
    watcher.set_known(&target, &sha256_file(&staging).unwrap());
    fs::rename(&staging, &target).unwrap();
    assert_eq!(next_change(&watcher, Duration::from_millis(1200)), None);
}

/// Writes through a shared mapping raise no inotify event, only a new mtime (here forced by
/// `msync`, as writeback would): the watcher still reports the file only once its size and
/// mtime held still for a whole quiet period, so never with a content still being written.
#[test]
fn the_watcher_waits_for_size_and_mtime_to_settle_even_without_events() {
    use std::os::unix::fs::FileExt;

    const PAGE: usize = 4096;
    const PAGES: usize = 24;
    let plugins = private_dir();
    let target = plugins.path().join("mapped.so");
    fs::write(&target, vec![0u8; PAGE * PAGES]).unwrap();
    let watcher = PluginWatcher::new(&[plugins.path().to_path_buf()], Duration::from_millis(300)).unwrap();
    let file = fs::OpenOptions::new().read(true).write(true).open(&target).unwrap();
    // One ordinary write starts the quiet period.
    file.write_at(&[1], 0).unwrap();
    // SAFETY: a fresh shared mapping of a file this test owns, of the file's length; only
    // this test touches it, within bounds, and it is unmapped before the file is closed.
    let map = unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        libc::mmap(std::ptr::null_mut(), PAGE * PAGES, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap");
    // Keep writing, one page every 60 ms, for four quiet periods.
    for page in 1..PAGES - 4 {
        std::thread::sleep(Duration::from_millis(60));
        // SAFETY: `page * PAGE` is inside the mapping; msync covers the mapping only.
        unsafe {
            *(map as *mut u8).add(page * PAGE) = 1;
            assert_eq!(libc::msync(map, PAGE * PAGES, libc::MS_SYNC), 0, "msync");
        }
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(map, PAGE * PAGES) };
    drop(file);
    let final_sha = sha256_file(&target).unwrap();
    let event = next_change(&watcher, Duration::from_secs(5)).expect("a change event");
    let canonical = target.canonicalize().unwrap();
    assert_eq!(
        event,
        PluginEvent::Changed { path: canonical, sha256: final_sha },
        "reported while the mapped writes were still going on"
    );
    assert_eq!(next_change(&watcher, Duration::from_millis(800)), None, "one event, for the settled content");
}

#[test]
fn a_symlink_in_a_writable_directory_is_refused() {
    let plugins = private_dir();
    let links = private_dir();
    let work = private_dir();
    let real = install_example("passthrough", plugins.path(), "passthrough.so");
    let link = links.path().join("passthrough.so");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(load_library(&link, &options_in(work.path())).is_ok(), "a symlink in a safe directory loads");

    fs::set_permissions(links.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let err = load_library(&link, &options_in(work.path())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&links.path().display().to_string()) && msg.contains("0777"), "{msg}");
}

#[test]
fn processors_are_found_by_name_in_the_plugin_directory() {
    let plugins = private_dir();
    let work = private_dir();
    install_example("example-processor", plugins.path(), "example.so");
    let lib = sfprocessor_plugin_loader::load_named(plugins.path(), "example", &options_in(work.path()))
        .unwrap()
        .expect("example.so is there");
    assert_eq!(lib.descriptors[0].name.as_str(), "example");
    assert!(sfprocessor_plugin_loader::load_named(plugins.path(), "absent", &options_in(work.path())).unwrap().is_none());
}
