"""What `pulse` says about itself: `--version` with the commit, shell completions that the
shells accept, and manual pages that render."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def pulse(pulse_bin, *args, cwd=None):
    p = subprocess.run([pulse_bin, *args], capture_output=True, text=True, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_version_names_the_package_version_and_the_commit(pulse_bin):
    version = re.search(r'^version = "(.+)"$', (REPO / "Cargo.toml").read_text(), re.M).group(1)
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else "unknown"
    assert pulse(pulse_bin, "--version").strip() == f"pulse {version} (commit {commit})"


def test_bash_completion_is_valid_bash_and_completes_commands(pulse_bin, tmp_path):
    script = tmp_path / "pulse.bash"
    script.write_text(pulse(pulse_bin, "completions", "bash"))
    subprocess.run(["bash", "-n", str(script)], check=True)
    # Loaded into a shell, it completes `pulse ru` to the commands that start so.
    probe = f'source {script}; COMP_WORDS=(pulse ru); COMP_CWORD=1; COMP_LINE="pulse ru"; COMP_POINT=8; _pulse pulse ru pulse; echo "${{COMPREPLY[@]}}"'
    words = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert {"run", "runs"} <= set(words), words


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completions(pulse_bin, tmp_path, shell):
    text = pulse(pulse_bin, "completions", shell)
    assert "check-config" in text and "completions" in text
    if shutil.which(shell):
        script = tmp_path / f"pulse.{shell}"
        script.write_text(text)
        subprocess.run([shell, "-n", str(script)], check=True)


def test_man_page_is_roff_and_renders(pulse_bin, tmp_path):
    page = pulse(pulse_bin, "man")
    assert re.search(r'^\.TH pulse 1 ', page, re.M), page[:300]
    assert ".SH NAME" in page and ".SH SUBCOMMANDS" in page
    if shutil.which("man"):
        (tmp_path / "pulse.1").write_text(page)
        rendered = subprocess.run(["man", "-l", str(tmp_path / "pulse.1")], capture_output=True, text=True,
                                  env={"PATH": "/usr/bin:/bin", "MANPAGER": "cat", "MANWIDTH": "100"})
        assert rendered.returncode == 0, rendered.stderr
        assert "NAME" in rendered.stdout and "pulse-check-config" in rendered.stdout
    out = tmp_path / "man1"
    pulse(pulse_bin, "man", "--dir", str(out))
    names = {p.name for p in out.iterdir()}
    assert {"pulse.1", "pulse-run.1", "pulse-serve.1", "pulse-completions.1"} <= names, names


def test_dockerfile_passes_hadolint_and_the_readme_uses_what_it_ships():
    """No container daemon runs on the test machines: the image is linted, not built."""
    hadolint = Path(sys.executable).parent / "hadolint"
    lint = subprocess.run([str(hadolint), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docker = (REPO / "Dockerfile").read_text()
    for line in ['USER 10001:10001', 'WORKDIR /srv/pulse', 'ENTRYPOINT ["pulse"]',
                 'VOLUME ["/srv/pulse/lake", "/srv/pulse/state", "/srv/pulse/config"]']:
        assert line in docker.splitlines(), line
    readme = (REPO / "README.md").read_text()
    for used in ["runAsUser: 10001", "mountPath: /srv/pulse/lake", "mountPath: /srv/pulse/state",
                 "mountPath: /srv/pulse/config", "WorkingDirectory=/srv/pulse", "ExecStart=/usr/local/bin/pulse",
                 "cargo install --locked --path . --root /usr/local"]:
        assert used in readme, used
