"""The xen-livepatch verbs: Xen's tool messages and exit codes (reference section 5)."""

from __future__ import annotations

import errno

import pytest
from click.testing import CliRunner
from helpers import PAYLOADS

from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import VERBS, parse, parse_chain
from xsplice_emu.errors import ConfigError
from xsplice_emu.livepatch import Action

HEADER = (" ID                                     | status     | metadata\n"
          "----------------------------------------+------------+---------------\n")


def _livepatch(*args: str, vcpus: int = 4):
    """Run `xsplice-emu livepatch --vcpus N ARGS...` in the payload directory."""
    return CliRunner().invoke(main, ["livepatch", "--vcpus", str(vcpus), "--boot-ms", "1",
                                     *[arg.replace("@", str(PAYLOADS) + "/") for arg in args]])


@pytest.fixture
def session(payloads):
    """A booted 4-vCPU session whose relative paths start at payloads/build."""
    return Session(vcpus=4, seed=1, boot_ms=1, base=payloads)


def test_list_when_empty_says_nothing_to_list(payloads):
    """`list` on a fresh machine: xen-livepatch 4.17's "Nothing to list", exit 0."""
    result = _livepatch("list")
    assert result.exit_code == 0
    assert result.stdout == "Nothing to list\n"


def test_load_uploads_and_applies_then_list_shows_applied(payloads):
    """`load FILE` names the payload after the file; `list` then shows it APPLIED."""
    result = _livepatch("load", "@xen_hello_world.livepatch", "list")
    assert result.exit_code == 0
    assert (f"Uploading {PAYLOADS}/xen_hello_world.livepatch... completed\n"
            "Applying xen_hello_world... completed\n") in result.stdout
    assert result.stdout.endswith(HEADER + f"{'xen_hello_world':<40}| APPLIED    | LIVEPATCH_RULEZ\n")
    assert "(XEN) livepatch: xen_hello_world finished APPLY with rc=0" in result.stderr


def test_unknown_payload_is_error_2_with_exit_1(payloads):
    """An action on a name nobody uploaded: Xen's two lines, exit 1."""
    result = _livepatch("revert", "xen_hello_world")
    assert result.exit_code == 1
    assert result.stderr == "Failed to get status of xen_hello_world.\nError 2: No such file or directory\n"


def test_loading_twice_is_error_17(payloads):
    """The second `load` of the same file fails with EEXIST and stops the run, exit 1."""
    result = _livepatch("load", "@xen_hello_world.livepatch", "load", "@xen_hello_world.livepatch", "list")
    assert result.exit_code == 1
    assert result.stdout.endswith("Uploading " + str(PAYLOADS) + "/xen_hello_world.livepatch... failed\n")
    assert "Error 17: File exists\n" in result.stderr
    assert HEADER not in result.stdout


def test_target_state_already_reached_needs_no_action(payloads):
    """revert of a CHECKED payload and apply of an APPLIED one: "No action needed.", exit 0."""
    result = _livepatch("upload", "hello", "@xen_hello_world.livepatch", "revert", "hello",
                        "apply", "hello", "apply", "hello")
    assert result.exit_code == 0
    assert result.stdout.count("No action needed.\n") == 2


def test_unload_of_an_applied_payload_is_the_wrong_state(payloads):
    """unload while APPLIED: the wrong-state message with both states, exit 1."""
    result = _livepatch("load", "@xen_nop.livepatch", "unload", "xen_nop")
    assert result.exit_code == 1
    assert result.stderr.endswith("xen_nop is in the wrong state.\nCurrent state: APPLIED\nExpected state: CHECKED\n")


def test_revert_below_the_top_is_ebusy_with_exit_2(payloads):
    """Reverting hello under bye: Error 16, exit status 2 (retry later)."""
    result = _livepatch("load", "@xen_hello_world.livepatch", "load", "@xen_bye_world.livepatch",
                        "revert", "xen_hello_world")
    assert result.exit_code == 2
    assert result.stdout.endswith("Reverting xen_hello_world... failed\n")
    assert "Error 16: Device or resource busy\n" in result.stderr


def test_replace_and_unload_messages(payloads):
    """replace prints Xen's verb; unload of a CHECKED payload completes."""
    result = _livepatch("load", "@xen_hello_world.livepatch", "upload", "replace", "@xen_replace_world.livepatch",
                        "replace", "replace", "revert", "replace", "unload", "replace", "list")
    assert result.exit_code == 0
    assert "Replacing all live patches with replace... completed\n" in result.stdout
    assert "Unloading replace... completed\n" in result.stdout
    assert result.stdout.endswith(HEADER + f"{'xen_hello_world':<40}| CHECKED    | LIVEPATCH_RULEZ\n")


def test_bad_usage_is_exit_2(payloads):
    """A verb without its argument is a usage error."""
    result = _livepatch("apply")
    assert result.exit_code == 2
    assert "Missing argument 'NAME'" in result.output


def test_failed_apply_of_load_unloads_again(session):
    """load of a payload whose expectations fail: Error 22, then it is unloaded; list is empty."""
    outcome = session.command(parse("load xen_expectations_fail.livepatch"))
    assert (outcome.exit_code, outcome.errno) == (1, errno.EINVAL)
    assert "Applying xen_expectations_fail... failed\n" in outcome.text
    assert "Error 22: Invalid argument\n" in outcome.text
    assert "Unloading xen_expectations_fail... completed\n" in outcome.text
    assert session.livepatch.list() == []


def test_action_already_in_progress_is_exit_2(session):
    """While an apply is pending, the tool says so and exits 2."""
    session.command(parse("upload hello xen_hello_world.livepatch"))
    session.livepatch.action("hello", Action.APPLY)
    outcome = session.command(parse("revert hello"))
    assert (outcome.exit_code, outcome.errno) == (2, errno.EAGAIN)
    assert outcome.text == "Cannot execute revert.\nOperation already in progress.\n"


def test_timeout_is_error_16_and_list_shows_the_rc(session):
    """A stalled vCPU: the apply fails with Error 16 (exit 2) and list shows (16, ...)."""
    session.command(parse("upload hello xen_hello_world.livepatch"))
    session.stall(2, 50_000_000)
    outcome = session.command(parse("apply hello"))
    assert (outcome.exit_code, outcome.errno) == (2, errno.EBUSY)
    assert "Applying hello... failed\nError 16: Device or resource busy\n" in outcome.text
    assert "(XEN) livepatch: hello: Timed out on semaphore in CPU quiesce phase 2/3\n" in outcome.text
    listed = session.command(parse("list")).text
    assert f"{'hello':<40}| CHECKED (16, Device or resource busy)    | LIVEPATCH_RULEZ\n" in listed
    assert session.text_unchanged()


def test_action_nobody_picks_up_did_not_complete(session):
    """With the vCPU the work is queued on held by the host past twice the timeout: "Operation didn't complete.",
    exit 2."""
    session.command(parse("upload hello xen_hello_world.livepatch"))
    outcome = session.command(parse("apply hello --timeout-ms 5 --preempt-requester-ms 100"))
    assert (outcome.exit_code, outcome.errno) == (2, errno.EAGAIN)
    assert outcome.text == ("Applying hello... failed\nOperation didn't complete.\n"
                            "(XEN) livepatch: hello: Verifying enabled expectations for all functions\n"
                            "(testbed) the tool stopped waiting after twice the timeout, 10 ms of virtual time; "
                            "the action may still run\n")


def test_name_longer_than_xen_allows(session):
    """A 129-character name stops in the tool; 128 reaches the hypervisor, which wants room for the NUL."""
    outcome = session.command(parse(f"upload {'n' * 129} xen_hello_world.livepatch"))
    assert (outcome.exit_code, outcome.errno) == (1, errno.EINVAL)
    assert outcome.text == "ID must be no more than 128 characters.\n"
    outcome = session.command(parse(f"upload {'n' * 128} xen_hello_world.livepatch"))
    assert (outcome.exit_code, outcome.errno) == (1, errno.EINVAL)
    assert outcome.text.startswith("Uploading xen_hello_world.livepatch... failed\nError 22: Invalid argument\n")
    assert session.livepatch.list() == []


def test_missing_file_could_not_open(session):
    """upload of a file that does not exist: Xen's "Could not open" lines."""
    outcome = session.command(parse("upload x nowhere.livepatch"))
    assert (outcome.exit_code, outcome.errno) == (1, errno.ENOENT)
    assert outcome.text == "Could not open nowhere.livepatch.\nError 2: No such file or directory\n"


def test_refused_upload_changes_no_guest_byte(session):
    """A refused upload through the tool leaves guest memory and the list exactly as they were."""
    session.command(parse("upload hello xen_hello_world.livepatch"))
    before = session.machine.memory.digest()
    outcome = session.command(parse("upload bad bad/bad_reloc.livepatch"))
    assert outcome.errno == errno.EOPNOTSUPP and outcome.exit_code == 1
    assert session.machine.memory.digest() == before
    assert [payload.name for payload in session.livepatch.list()] == ["hello"]


@pytest.mark.parametrize("before, after", [
    ("apply --from-vcpu 2 hello", "apply hello --from-vcpu 2"),
    ("revert --timeout-ms 5 --nodeps hello", "revert hello --nodeps --timeout-ms=5"),
    ("load --from-vcpu 1 x.livepatch", "load x.livepatch --from-vcpu 1"),
])
def test_options_go_before_or_after_the_name(before, after):
    """An action's options may come before or after its argument: the same request."""
    assert parse(before) == parse(after)


def test_a_chain_of_verbs_splits_where_each_verb_is_complete():
    """`VERB ARGS [VERB ARGS]...` as the livepatch command reads it: options anywhere within each verb."""
    assert parse_chain("upload h x.livepatch apply h --from-vcpu 2 list apply --nodeps h") == [
        parse("upload h x.livepatch"), parse("apply h --from-vcpu 2"), parse("list"), parse("apply h --nodeps")]


@pytest.mark.parametrize("line, message", [
    ("apply", "apply: Missing argument 'NAME' (usage: apply NAME [--timeout-ms MS] [--from-vcpu N] [--nodeps] "
              "[--unsafe] [--from-irq] [--preempt-requester-ms MS])"),
    ("apply hello --timeout-ms 0", "apply: --timeout-ms must be > 0 and <= 60000, got 0"),
    ("apply hello --timeout-ms soon", "apply: --timeout-ms takes a number, got 'soon'"),
    ("apply hello --from-vcpu -1", "apply: --from-vcpu must be >= 0 and <= 255, got -1"),
    ("apply hello --from-vcpu", "apply: --from-vcpu needs a value"),
    ("apply hello --fast", "apply: Unknown option '--fast'"),
    ("apply hello --nodeps=yes", "apply: --nodeps takes no value"),
    ("unload hello --nodeps", "unload: Unknown option '--nodeps'"),
    ("upload hello", "upload: Missing argument 'FILE'"),
    ("list all", "list: Unexpected argument 'all'"),
    ("frobnicate", "unknown command 'frobnicate' (one of upload, list, load, apply, revert, unload, replace)"),
])
def test_a_bad_verb_line_is_one_line_naming_the_command(line, message):
    """Each mistake is a ConfigError of one line that names the command and what was wrong."""
    with pytest.raises(ConfigError) as caught:
        parse(line)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_option_after_the_name_on_the_command_line(payloads):
    """`xsplice-emu livepatch ... apply hello --from-vcpu 2`: the option applies, the next verb still runs."""
    result = _livepatch("upload", "hello", "@xen_hello_world.livepatch", "apply", "hello", "--from-vcpu", "2",
                        "--timeout-ms", "10", "list")
    assert result.exit_code == 0, result.output
    assert "Applying hello... completed\n" in result.stdout
    assert result.stdout.endswith(HEADER + f"{'hello':<40}| APPLIED    | LIVEPATCH_RULEZ\n")


def test_help_explains_the_verbs_and_their_options():
    """`livepatch --help` lists every verb; `livepatch apply --help` shows its options and ranges."""
    listing = CliRunner().invoke(main, ["livepatch", "--help"])
    assert listing.exit_code == 0
    text = " ".join(listing.stdout.split())
    for verb in VERBS.values():
        assert f"{verb.synopsis} {verb.help}" in text
    apply = CliRunner().invoke(main, ["livepatch", "apply", "--help"])
    assert apply.exit_code == 0
    assert apply.stdout.startswith("Usage: main livepatch [OPTIONS] apply NAME [--timeout-ms MS] [--from-vcpu N]")
    for text in ("Apply payload NAME", "--timeout-ms MS",
                 "<= 60000]", "--from-vcpu N", "[>= 0 and <= 255]", "--nodeps"):
        assert text in apply.stdout
