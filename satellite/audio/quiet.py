"""Keep ALSA's and JACK's probing chatter out of the terminal and the journal.

PortAudio probes every ALSA PCM and the JACK server when it starts; each failed probe is
written straight to stderr by the C libraries (about 70 lines on a device without a sound
card or JACK, again on every retry of a missing mic). Both libraries let a program install
its own message handler: ALSA's messages are dropped, JACK's go to the debug log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

_LOGGER = logging.getLogger(__name__)

# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
# The variadic arguments are never read, so the fixed ones are all the callback declares.
_AlsaHandler = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)
_JackHandler = ctypes.CFUNCTYPE(None, ctypes.c_char_p)  # void handler(const char *message)


@_AlsaHandler
def _drop_alsa_message(
    _file: bytes | None, _line: int, _function: bytes | None, _err: int, _fmt: bytes | None
) -> None:
    return None


@_JackHandler
def _log_jack_message(message: bytes | None) -> None:
    if message:
        _LOGGER.debug("JACK: %s", message.decode(errors="replace"))


def _library(name: str) -> ctypes.CDLL | None:
    path = ctypes.util.find_library(name)
    if path is None:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


@functools.cache
def quiet_audio_libraries() -> None:
    """Install the handlers (once per process, before PortAudio starts); a library that is
    not there has nothing to say."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never start a JACK server to probe it
    alsa = _library("asound")
    if alsa is not None:
        alsa.snd_lib_error_set_handler(_drop_alsa_message)
    jack = _library("jack")
    if jack is not None:
        jack.jack_set_error_function(_log_jack_message)
        jack.jack_set_info_function(_log_jack_message)
