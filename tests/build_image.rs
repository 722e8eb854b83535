//! Build-step mode (`run --build`): first on the host, then inside a real
//! podman image build `FROM scratch` that contains the static musl binary and
//! static busybox. The build reaches the test server through the host
//! network. With the token as a secret mount, neither the token nor any
//! secret value may appear in the image history, its configuration or any
//! layer; with the token as a build argument, the history does show it,
//! which proves the leak check can fail.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use util::*;

const EXPIRED_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJleHBpcmVkIn0.expired-token-for-build-tests";

/// Limit for one podman call, so a stuck build fails the test instead of
/// blocking the suite.
const PODMAN_LIMIT: Duration = Duration::from_secs(600);

fn shim_with_token(server: &TestServer, token: &str) -> std::process::Command {
    let mut command = shim();
    command
        .env("INFISICAL_DOMAIN", &server.url)
        .env("INFISICAL_PROJECT_ID", PROJECT_ID)
        .env("INFISICAL_TOKEN", token);
    command
}

fn login(server: &TestServer) -> String {
    let output = run(shim_for(server).arg("login"));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    text(&output.stdout).trim_end_matches('\n').to_string()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

// ---------------------------------------------------------------------------
// Build mode on the host

#[test]
fn build_expired_token_names_login() {
    let server = TestServer::with_args(&["--expired-token", EXPIRED_TOKEN]);
    let output = run(shim_with_token(&server, EXPIRED_TOKEN).args(["run", "--build", "--", "true"]));
    assert_eq!(code(&output.status), 77, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("build token has expired"), "{stderr}");
    assert!(stderr.contains("infisical-init login"), "{stderr}");
    assert!(!stderr.contains(EXPIRED_TOKEN), "stderr leaks the token:\n{stderr}");
    assert_no_leak(&stderr);
}

#[test]
fn build_environment_token_warns_once() {
    let server = TestServer::start();
    let output = run(shim_with_token(&server, READY_TOKEN).args(["run", "--build", "--", "true"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert_eq!(count(&stderr, "docker history"), 1, "{stderr}");
    assert!(stderr.contains("INFISICAL_TOKEN"), "{stderr}");
    assert!(stderr.contains("--mount=type=secret,id=infisical_token"), "{stderr}");
    assert_no_leak(&stderr);
}

#[test]
fn build_token_file_child_environment() {
    let server = TestServer::start();
    let directory = temp_dir("build-token-file");
    let token_file = directory.join("token");
    write_file(&token_file, &format!("{READY_TOKEN}\n"));
    let working = directory.join("work");
    std::fs::create_dir(&working).unwrap();

    // The child checks the secrets it got and the credentials it must not
    // get, and reports whether it shares the shim's process group.
    let script = r#"
        [ "$API_KEY" = dev-api-key-123 ] || exit 10
        env | grep -q '^INFISICAL_TOKEN' && exit 11
        shim_group=$(cut -d' ' -f5 /proc/$PPID/stat)
        own_group=$(cut -d' ' -f5 /proc/$$/stat)
        [ "$shim_group" = "$own_group" ] || exit 12
        exit 7
    "#;
    let mut command = shim();
    command
        .current_dir(&working)
        .env("INFISICAL_DOMAIN", &server.url)
        .env("INFISICAL_PROJECT_ID", PROJECT_ID)
        .env("INFISICAL_TOKEN_FILE", &token_file)
        .args(["run", "--build", "--", "sh", "-c", script]);
    let output = run(&mut command);

    assert_eq!(code(&output.status), 7, "the child's status is not passed on: {}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("docker history"), "warned about a token read from a file:\n{stderr}");
    assert_no_leak(&stderr);
    let left: Vec<_> = std::fs::read_dir(&working).unwrap().collect();
    assert!(left.is_empty(), "build mode wrote files into the working directory");
}

// ---------------------------------------------------------------------------
// A real image build with podman

/// Runs podman through the helper that sets it up for these machines.
fn podman() -> Command {
    let mut command = Command::new(repository().join("tests/containers/podman.sh"));
    command.stdin(Stdio::null());
    command
}

fn podman_output(args: &[&str]) -> Output {
    let output = run_with_limit(podman().args(args), PODMAN_LIMIT);
    assert!(output.status.success(), "podman {args:?} failed:\n{}", text(&output.stderr));
    output
}

fn require_tools() {
    let podman = Command::new("podman").arg("--version").output();
    assert!(
        podman.is_ok_and(|output| output.status.success()),
        "podman is not installed: apt-get install -y podman runc busybox-static musl-tools, \
         then rustup target add {MUSL_TARGET}"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing: apt-get install -y busybox-static"
    );
}


/// Removes the images a test built, also when it fails.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = run_with_limit(podman().args(["rmi", "--force", image]), PODMAN_LIMIT);
        }
    }
}

/// How the build step gets its token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenDelivery {
    SecretMount,
    BuildArgument,
}

/// Writes the build context: busybox, the static binary, the expected value
/// of `API_KEY` (mounted as a second secret, so the check leaves no trace)
/// and a Containerfile whose `RUN` step runs `infisical-init run --build`.
fn build_context(server: &TestServer, delivery: TokenDelivery, name: &str) -> PathBuf {
    let directory = temp_dir(name);
    std::fs::copy("/bin/busybox", directory.join("busybox")).unwrap();
    std::fs::copy(static_binary(), directory.join("infisical-init")).unwrap();
    write_file(&directory.join("expected_api_key"), "dev-api-key-123");

    let (argument, token_mount) = match delivery {
        TokenDelivery::SecretMount => ("", "--mount=type=secret,id=infisical_token "),
        TokenDelivery::BuildArgument => ("ARG INFISICAL_TOKEN\n", ""),
    };
    // The marker contains only facts derived from the secrets, never a value.
    let check = r#"if [ "$API_KEY" = "$(cat /run/secrets/expected_api_key)" ]; then echo api_key=match; else echo api_key=mismatch; fi > /build-marker; if env | grep -q ^INFISICAL_TOKEN; then echo token_in_env=present; else echo token_in_env=absent; fi >> /build-marker; echo api_key_length=${#API_KEY} >> /build-marker"#;
    let containerfile = format!(
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         COPY infisical-init /usr/local/bin/infisical-init\n\
         {argument}\
         RUN {token_mount}--mount=type=secret,id=expected_api_key \
         infisical-init run --build --domain {} --project-id {PROJECT_ID} -- sh -c '{check}'\n",
        server.url
    );
    write_file(&directory.join("Containerfile"), &containerfile);
    directory
}

/// Builds the image on the host network and returns podman's build log.
fn build_image(context: &Path, tag: &str, extra: &[String]) -> String {
    let mut command = podman();
    command.args(["build", "--layers=false", "--no-cache", "--network=host", "--tag", tag]);
    command.args(extra);
    command.arg("--secret").arg(format!("id=expected_api_key,src={}", context.join("expected_api_key").display()));
    command.arg("--file").arg(context.join("Containerfile")).arg(context);
    let output = run_with_limit(&mut command, PODMAN_LIMIT);
    let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "podman build failed:\n{log}");
    log
}

fn build_marker(tag: &str) -> String {
    text(&podman_output(&["run", "--rm", "--network=none", tag, "cat", "/build-marker"]).stdout)
}

/// Returns where each of `needles` shows up in the image: its history, its
/// inspect output, or a file of the `podman save` archive (every layer is
/// an uncompressed tar inside it, so file contents are searched verbatim).
fn find_in_image(tag: &str, needles: &[&str], scratch: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut search = |place: &str, bytes: &[u8]| {
        for needle in needles {
            if bytes.windows(needle.len()).any(|window| window == needle.as_bytes()) {
                found.push(format!("{needle:?} in {place}"));
            }
        }
    };

    let history = podman_output(&["history", "--no-trunc", tag]);
    search("podman history", &history.stdout);
    let inspect = podman_output(&["image", "inspect", tag]);
    search("podman image inspect", &inspect.stdout);

    std::fs::create_dir_all(scratch).unwrap();
    let archive = scratch.join("image.tar");
    podman_output(&["save", "--format", "docker-archive", "--output", archive.to_str().unwrap(), tag]);
    let unpacked = scratch.join("image");
    std::fs::create_dir_all(&unpacked).unwrap();
    let status = Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&unpacked).status().unwrap();
    assert!(status.success(), "tar could not unpack the saved image");

    let mut layers = 0;
    for entry in std::fs::read_dir(&unpacked).unwrap() {
        let path = entry.unwrap().path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if !metadata.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if path.extension().is_some_and(|extension| extension == "tar") {
            layers += 1;
            assert!(!bytes.starts_with(&[0x1f, 0x8b]), "{} is compressed; the byte search needs plain tar", path.display());
        }
        search(&format!("saved file {}", path.file_name().unwrap().to_string_lossy()), &bytes);
    }
    assert!(layers >= 1, "no layer tar in the saved image");
    found
}

/// Returns the token and every recorded secret value.
fn needles(token: &str) -> Vec<&str> {
    let mut needles: Vec<&str> = SENSITIVE.to_vec();
    needles.push(token);
    needles.push(READY_TOKEN);
    needles
}

#[test]
fn build_secret_mount_leaves_no_trace() {
    require_tools();
    let server = TestServer::start();
    let token = login(&server);
    let context = build_context(&server, TokenDelivery::SecretMount, "build-image-secret");
    let token_file = context.join("infisical_token");
    write_file(&token_file, &token);
    let tag = format!("localhost/infisical-init-build-test-secret-{}:latest", std::process::id());
    let _images = Images(vec![tag.clone()]);

    let log = build_image(&context, &tag, &[format!("--secret=id=infisical_token,src={}", token_file.display())]);

    assert_eq!(build_marker(&tag), "api_key=match\ntoken_in_env=absent\napi_key_length=15\n", "build log:\n{log}");
    assert!(!log.contains("docker history"), "warned about a build argument:\n{log}");
    assert!(!log.contains(&token), "the build log shows the token");
    let found = find_in_image(&tag, &needles(&token), &context);
    assert!(found.is_empty(), "the image holds secrets: {found:?}");
}

#[test]
fn build_argument_token_shows_in_history() {
    require_tools();
    let server = TestServer::start();
    let token = login(&server);
    let context = build_context(&server, TokenDelivery::BuildArgument, "build-image-argument");
    let tag = format!("localhost/infisical-init-build-test-argument-{}:latest", std::process::id());
    let _images = Images(vec![tag.clone()]);

    let log = build_image(&context, &tag, &[format!("--build-arg=INFISICAL_TOKEN={token}")]);

    assert_eq!(build_marker(&tag), "api_key=match\ntoken_in_env=absent\napi_key_length=15\n", "build log:\n{log}");
    let warnings: Vec<&str> = log.lines().filter(|line| line.starts_with("infisical-init:")).collect();
    assert_eq!(warnings.iter().filter(|line| line.contains("docker history")).count(), 1, "build log:\n{log}");
    assert!(warnings.iter().all(|line| !line.contains(&token)), "a log line shows the token: {warnings:?}");
    let history = text(&podman_output(&["history", "--no-trunc", &tag]).stdout);
    assert!(history.contains(&format!("INFISICAL_TOKEN={token}")), "the build argument is missing from the history");
    let found = find_in_image(&tag, &[token.as_str()], &context);
    assert!(found.iter().any(|place| place.contains("podman history")), "the leak check missed the token: {found:?}");
    // The recorded values, without the token header that every token shares.
    let values: Vec<&str> = SENSITIVE.iter().copied().filter(|value| !token.contains(value)).collect();
    let found = find_in_image(&tag, &values, &context.join("values"));
    assert!(found.is_empty(), "secret values in the image: {found:?}");
}
