"""Turn user errors into one-line messages in the browser, never tracebacks.

`workbench.errors.USER_ERRORS` become `gr.Error` with their message; anything else is a
bug: it is logged with its traceback on the server and shown as a short generic error.
"""

from __future__ import annotations

import functools
import logging

import gradio as gr

from workbench.errors import USER_ERRORS, StoreBusy

log = logging.getLogger("workbench.ui")


def one_line(error: BaseException) -> str:
    """The error's message on one line."""
    return " ".join(str(error).split())


def user_errors(fn):
    """Decorate a callback so user errors reach the browser as a one-line `gr.Error`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except StoreBusy as error:
            raise gr.Error(f"The store is busy: {one_line(error)}", title="Store busy", print_exception=False) from None
        except USER_ERRORS as error:
            raise gr.Error(one_line(error), title="Cannot do that", print_exception=False) from None
        except Exception as error:
            log.exception("callback %s failed", fn.__name__)
            raise gr.Error(f"Internal error ({type(error).__name__}); the server log has the details.",
                           title="Something went wrong", print_exception=False) from None

    return wrapper
