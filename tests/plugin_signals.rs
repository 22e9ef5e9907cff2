//! However the plugin ends short of SIGKILL, its socket and the private
//! directory around it are gone afterwards: SIGTERM (a `kill`, a container
//! runtime stopping the pod) and SIGHUP as much as a host that quits or goes
//! away.
//! SIGINT is ignored, as go-plugin does (tests/netrpc_wire.rs).

use std::time::Duration;

use test_support::host::Host;
use test_support::launch::PluginProcess;
use test_support::plugin_binary;

async fn a_signal_removes_the_socket_and_its_directory(signal: libc::c_int, name: &str) {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    host.ping().await.unwrap();
    assert!(plugin.socket.exists());
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(plugin.child.id() as libc::pid_t, signal);
    }
    let status = plugin
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("exit within 2 s of {name}"));
    assert!(status.success(), "{name}: {status}");
    assert!(!plugin.socket.exists(), "{name}: socket file left behind");
    assert!(
        !plugin.socket_dir.exists(),
        "{name}: socket directory left behind"
    );
    assert!(
        plugin.stderr().iter().any(|l| l.contains(name)),
        "{:?}",
        plugin.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_removes_the_socket_and_its_directory_and_exits_cleanly() {
    a_signal_removes_the_socket_and_its_directory(libc::SIGTERM, "SIGTERM").await;
}

/// A plugin started by hand from a terminal that is then closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_removes_the_socket_and_its_directory_and_exits_cleanly() {
    a_signal_removes_the_socket_and_its_directory(libc::SIGHUP, "SIGHUP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_before_any_host_connects_also_cleans_up() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(plugin.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = plugin
        .wait_exit(Duration::from_secs(2))
        .expect("exit within 2 s of SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!plugin.socket_dir.exists(), "socket directory left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_then_the_host_going_away_still_cleans_up() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(plugin.child.id() as libc::pid_t, libc::SIGINT);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    host.ping().await.expect("SIGINT is ignored");
    host.session.close();
    drop(host);
    plugin.close_stdout();
    let status = plugin
        .wait_exit(Duration::from_secs(2))
        .expect("exit within 2 s of the host going away");
    assert!(status.success(), "{status}");
    assert!(!plugin.socket_dir.exists(), "socket directory left behind");
}
