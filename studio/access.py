"""Who may train from the app, and what a visitor sees of the server: plain strings in, decisions out.

No gradio here: the app passes the visitor's user name (from Hugging Face sign-in, or gradio's own
login) as a string, and shows the strings made here.

Training from the Train tab:

* On your own machine it is on unless ``ELGAN_STUDIO_TRAIN=0`` (or ``app.py --no-train``).
* On a Hugging Face Space (``SPACE_ID`` is set; Spaces also set ``SYSTEM=spaces``) it is **off** unless
  the Space's owner sets ``ELGAN_STUDIO_TRAIN=1``, and even then only the Hugging Face users named in
  ``ELGAN_STUDIO_TRAIN_USERS`` (comma-separated) may start, stop or resume a job. With no list nobody
  may, and the tab says why. A Space is public: every visitor would otherwise share its CPU.
* ``ELGAN_STUDIO_TRAIN_USERS`` set anywhere limits training to the users it names (a visitor who is
  not signed in has no name and may not train).

What a visitor sees: run names, data folder names and bundle file names -- never a server path or a
process id (:func:`data_label`, :func:`scrub_paths`).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TRAIN_ENV = "ELGAN_STUDIO_TRAIN"  # "0": off; "1": on (needed on a Space); unset: on outside a Space
USERS_ENV = "ELGAN_STUDIO_TRAIN_USERS"  # comma-separated user names allowed to train
DATA_KINDS = ("synthetic", "folder", "cub", "lsun", "real")  # the data specs' prefixes (elgan.data)


def on_space(env: Mapping[str, str]) -> bool:
    """Whether the app runs on a Hugging Face Space (which sets SPACE_ID, and SYSTEM=spaces)."""
    return bool(env.get("SPACE_ID")) or env.get("SYSTEM") == "spaces"


def parse_users(text: str | None) -> frozenset[str]:
    """'alice, Bob,,' -> {'alice', 'bob'}: user names compared without regard to case."""
    return frozenset(name.strip().casefold() for name in (text or "").split(",") if name.strip())


def oauth_ready(env: Mapping[str, str]) -> bool:
    """Whether Hugging Face sign-in can work here: the Space has ``hf_oauth: true`` in its README
    metadata (Hugging Face then sets OAUTH_CLIENT_ID) and gradio's OAuth extra is installed."""
    return bool(env.get("OAUTH_CLIENT_ID")) and importlib.util.find_spec("authlib") is not None


@dataclass(frozen=True)
class TrainAccess:
    """The server's training policy. `users` None: anyone who reaches the app may train; a set: only
    those user names (an empty set: nobody). `why` says, for the page, why training is off or limited."""

    offered: bool = True  # the Train tab is shown and its endpoints answer
    users: frozenset[str] | None = None
    why: str = ""
    login: bool = False  # show a Hugging Face sign-in button (a Space with an allow-list and OAuth)

    @property
    def restricted(self) -> bool:
        return self.users is not None

    def refusal(self, username: str | None) -> str | None:
        """None when `username` may start, stop or resume a job; else the message that says why not."""
        if not self.offered:
            return "training is disabled on this server" + (f": {self.why}" if self.why else "")
        if self.users is None:
            return None
        if not self.users:
            return self.why
        if not username:
            return "sign in to train: on this server only the users its owner lists may train"
        if username.casefold() not in self.users:
            return f"{username} may not train on this server: only the users its owner lists may"
        return None

    def allows(self, username: str | None) -> bool:
        return self.refusal(username) is None


def train_access(env: Mapping[str, str] | None = None, no_train: bool = False) -> TrainAccess:
    """The policy for this environment (os.environ by default); `no_train` is app.py's --no-train."""
    env = os.environ if env is None else env
    switch = (env.get(TRAIN_ENV) or "").strip()
    users = parse_users(env.get(USERS_ENV))
    if no_train or switch == "0":
        return TrainAccess(False, why="the server's owner switched it off")
    if on_space(env):
        if switch != "1":
            return TrainAccess(False, why=f"it is off on a public Hugging Face Space unless the Space's owner "
                                          f"sets {TRAIN_ENV}=1 and {USERS_ENV}")
        if not users:
            return TrainAccess(True, frozenset(), why=f"training is switched on, but nobody may train: the Space's "
                                                      f"owner has not set {USERS_ENV} (comma-separated Hugging "
                                                      "Face user names)")
        login = oauth_ready(env)
        return TrainAccess(True, users, login=login, why=(
            "only the Hugging Face users the Space's owner lists may train; sign in with the button below"
            if login else "only the users the Space's owner lists may train, but sign-in is not set up: the "
            "owner needs `hf_oauth: true` in the Space's README metadata and `gradio[oauth]` installed"))
    if users:
        return TrainAccess(True, users, why="only the users the server's owner lists may train (sign in first)")
    return TrainAccess(True)


def data_label(spec: str) -> str:
    """A data spec as a visitor may see it: 'folder:/srv/x/weizmann_horse' -> 'folder:weizmann_horse'."""
    kind, sep, rest = str(spec).partition(":")
    if not sep:
        return Path(kind).name or kind
    if kind == "real" or rest.partition(":")[0] in DATA_KINDS:
        return f"{kind}:{data_label(rest)}"
    return f"{kind}:{Path(rest.rstrip('/')).name or rest}"


# an absolute path's directories: '/' not preceded by a name character, then at least one 'dir/'
_ABSOLUTE_DIRS = re.compile(r"(?<![\w.~\-])/(?:[^\s/'\"`()\[\]{}<>:,;|*?]+/)+")


def scrub_paths(text: str, roots: Iterable[str | Path] = ()) -> str:
    """Text for a visitor (a job's output, an error): paths under `roots` lose the root (they read as
    'run-name/file'), and any other absolute path keeps only its file name ('…/module.py')."""
    for root in roots:
        prefix = str(Path(root).resolve()).rstrip(os.sep) + os.sep
        text = text.replace(prefix, "")
    return _ABSOLUTE_DIRS.sub("…/", text)
