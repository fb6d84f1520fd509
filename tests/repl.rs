//! `lossc repl` driven through a pseudo-terminal as a user would drive it: typing, Tab,
//! the Up arrow, Ctrl-C and Ctrl-D; plus the same binary with piped input (no colour).
//!
//! History goes to a temporary file through `LOSSC_HISTORY`, never to the real home.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rexpect::process::WaitStatus;
use rexpect::session::{spawn_with_options, Options, PtySession};

/// Seconds to wait for any expected output.
const TIMEOUT_MS: u64 = 20_000;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lossc-repl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts `lossc repl` on a pseudo-terminal; `strip` removes ANSI escapes from what is read.
fn start(dir: &Path, colour: bool, strip: bool) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lossc"));
    cmd.arg("repl").current_dir(dir).env("TERM", "xterm").env("LOSSC_HISTORY", dir.join("history"));
    if colour {
        cmd.env_remove("NO_COLOR");
    } else {
        cmd.env("NO_COLOR", "1");
    }
    let options = Options::new().timeout_ms(Some(TIMEOUT_MS)).strip_ansi_escape_codes(strip);
    let mut session = spawn_with_options(cmd, options).expect("lossc repl starts on a pty");
    session.exp_string("Ctrl-D leaves").expect("the banner");
    session
}

/// rexpect turns each byte it reads into a char; this undoes that, so UTF-8 output
/// (braille, `∂`) reads back as text. Needles given to rexpect stay ASCII for that reason.
fn utf8(read: &str) -> String {
    let bytes: Vec<u8> = read.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Presses keys without Enter.
fn press(session: &mut PtySession, keys: &str) {
    session.send(keys).expect("typing works");
    session.flush().expect("the keys reach the terminal");
}

/// Types `line` and Enter, then waits for `expected` (ASCII) in the output; returns what
/// came before it.
fn type_line(session: &mut PtySession, line: &str, expected: &str) -> String {
    session.send_line(line).expect("typing works");
    let before = session.exp_string(expected).unwrap_or_else(|e| panic!("after `{line}`, expected `{expected}`: {e}"));
    utf8(&before)
}

fn exits_cleanly(session: &mut PtySession) {
    session.exp_eof().expect("the REPL ends");
    let status = session.process_mut().wait().expect("exit status");
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}

#[test]
fn a_user_defines_evaluates_differentiates_errs_plots_and_quits() {
    let dir = scratch("user");
    let mut s = start(&dir, false, true);
    // Define a loss: its simplified form and gradient are printed.
    type_line(&mut s, "maximum(1 - y*p, 0)^2", "grad p = ");
    type_line(&mut s, ":eval p=0.5,2 y=1,1", "loss = 0.125");
    s.exp_string("grad p = [-0.5, -0.0]").expect("the gradient values");
    type_line(&mut s, ":grad", "grad p = -where(");
    // A mistake renders a diagnostic; the session and the current loss survive it.
    type_line(&mut s, "(p - q)^2", "error: unknown name `q`");
    type_line(&mut s, ":evl p=1", "did you mean `:eval`?");
    type_line(&mut s, ":eval p=0.5 y=1", "loss = 0.25");
    // An unclosed bracket continues on the next line.
    s.send_line("maximum(p -").expect("typing works");
    type_line(&mut s, "y, 0)", "loss = maximum(t1, 0)");
    // Tab completes a function name.
    press(&mut s, "softp");
    press(&mut s, "\t");
    s.exp_string("softplus(").expect("the completed name");
    type_line(&mut s, "p - y)", "loss = softplus(t1)");
    // Ctrl-C cancels the line being typed.
    press(&mut s, "this line is abandoned");
    s.exp_string("abandoned").expect("the typed text is echoed");
    s.send_control('c').expect("ctrl-c");
    // Input typed ahead of the new prompt may be dropped with the cancelled line, as a
    // user would not type it; wait for the prompt.
    s.exp_string("lossc> ").expect("a fresh prompt");
    type_line(&mut s, ":set y=0", "y = 0");
    type_line(&mut s, ":eval p=0", "loss = 0.6931471805599453");
    // A plot in the terminal, drawn with braille.
    let mut plot = type_line(&mut s, ":plot p=-4:4", "gradient ");
    plot.push_str(&utf8(&s.exp_string("4  p").expect("the gradient panel's x axis")));
    assert!(plot.contains("loss L over p") && plot.contains("∂L/∂p"), "{plot}");
    assert!(plot.contains("-4") && plot.contains("4  p"), "the x axis: {plot}");
    assert!(plot.chars().filter(|c| ('\u{2801}'..='\u{28ff}').contains(c)).count() > 50, "braille: {plot}");
    type_line(&mut s, ":help", ":quit");
    s.send_line(":quit").expect("typing works");
    exits_cleanly(&mut s);
}

#[test]
fn history_is_kept_across_sessions_and_ctrl_d_leaves() {
    let dir = scratch("history");
    let mut s = start(&dir, false, true);
    type_line(&mut s, "abs(p - y)^3", "grad p = ");
    s.send_control('d').expect("ctrl-d");
    exits_cleanly(&mut s);
    let history = std::fs::read_to_string(dir.join("history")).expect("the history file was written");
    assert!(history.contains("abs(p - y)^3"), "{history}");
    // A new session recalls the entry with the Up arrow.
    let mut s = start(&dir, false, true);
    press(&mut s, "\x1b[A");
    s.send_line("").expect("enter");
    s.exp_string("grad p = sign(t1)").expect("the recalled loss is defined again");
    s.send_line(":q").expect("typing works");
    exits_cleanly(&mut s);
}

#[test]
fn colour_on_a_terminal_none_when_piped() {
    let dir = scratch("colour");
    let mut s = start(&dir, true, false);
    s.send_line("(p - y)^2").expect("typing works");
    s.exp_string("\x1b[1;36mloss\x1b[0m = ").expect("a coloured label on a terminal");
    s.send_line(":q").expect("typing works");
    exits_cleanly(&mut s);

    let mut child = Command::new(env!("CARGO_BIN_EXE_lossc"))
        .arg("repl")
        .current_dir(&dir)
        .env("LOSSC_HISTORY", dir.join("piped-history"))
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lossc repl starts");
    let input = "(p - y)^2\n:eval p=3 y=1\n:eval p=1\nlog(\n  p)\n:frobnicate\n:eval p=1\n";
    child.stdin.take().expect("piped stdin").write_all(input.as_bytes()).expect("written");
    let out = child.wait_with_output().expect("lossc repl ends at end of input");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "{stdout:?} {stderr:?}");
    assert!(stdout.contains("loss = 4.0\ngrad p = [4.0]\n"), "{stdout}");
    assert!(stdout.contains("loss = log(p)"), "{stdout}");
    assert!(stderr.contains("unknown command `:frobnicate`"), "{stderr}");
    assert!(stderr.contains("missing input `y`"), "{stderr}");
    assert!(stdout.ends_with("loss = 0.0\ngrad p = [1.0]\n"), "{stdout}");
    // Piped sessions leave no history.
    assert!(!dir.join("piped-history").exists());
}

/// The README's transcript is what the REPL prints (up to its `:plot`, whose size follows
/// the terminal): its `lossc> ` lines are piped in, everything else must come out.
#[test]
fn readme_transcript_is_true() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let start = readme.find("$ lossc repl\n").expect("a transcript in the README") + "$ lossc repl\n".len();
    let transcript = &readme[start..];
    let transcript = &transcript[..transcript.find("lossc> :plot").expect("the transcript plots")];
    let mut input = String::new();
    let mut expected = String::new();
    for line in transcript.lines() {
        match line.strip_prefix("lossc> ") {
            Some(entry) => {
                input.push_str(entry);
                input.push('\n');
            }
            None => {
                expected.push_str(line);
                expected.push('\n');
            }
        }
    }
    let dir = scratch("readme");
    let log = std::fs::File::create(dir.join("out")).expect("output file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lossc"))
        .arg("repl")
        .env("LOSSC_HISTORY", "")
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("a second handle"))
        .stderr(log)
        .spawn()
        .expect("lossc repl starts");
    child.stdin.take().expect("piped stdin").write_all(input.as_bytes()).expect("written");
    assert!(child.wait().expect("lossc repl ends").success());
    let out = std::fs::read_to_string(dir.join("out")).expect("output");
    // A diagnostic ends with a blank line the README leaves out.
    let out: String = out.lines().filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    assert_eq!(out, expected);
}
