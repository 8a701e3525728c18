"""``imaginarium COMMAND ...``: each command lives in the package that owns it.

The commands are imported lazily so that ``imaginarium parse`` never loads torch and the bot
never loads the worker.
"""

from __future__ import annotations

import importlib
import sys

from core.settings import SettingsError

# command -> (module, function, one-line help). Each function takes argv (list[str]) and
# returns an exit status.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "parse": ("core.cli", "parse_main", "parse a prompt into JobSpec(s); --json for scripts"),
    "migrate": ("db.cli", "migrate_main", "upgrade (or downgrade) the database schema"),
    "index-prompts": ("db.cli", "index_prompts_main", "embed prompts that search by meaning lacks"),
    "worker": ("gpu_worker.cli", "worker_main", "start a GPU worker (Celery)"),
    "imagine": ("gpu_worker.imagine_command", "imagine_main", "render a prompt offline on the embedded defaults"),
    "build-tiny-model": ("gpu_worker.cli", "build_tiny_model_main", "write the random-weights test model"),
    "bot": ("bot.cli", "bot_main", "run the Discord bot"),
    "web": ("web.cli", "web_main", "serve the web gallery"),
}


def _usage() -> str:
    lines = ["usage: imaginarium COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<18} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; bad settings end in one line on stderr and exit status 2."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"imaginarium: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except SettingsError as exc:
        print(f"imaginarium: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into a reader that quit early (`imaginarium parse ... | head`).
        sys.stderr.close()
        return 0
