mod util;
use util::*;

#[test]
fn run_injects_recorded_secret() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["run", "--", "sh", "-c", "printf %s \"$API_KEY\""]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "dev-api-key-123");
    assert_no_leak(&text(&output.stderr));
}
