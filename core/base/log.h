/*
 * log.h: the one format of Sightline's log lines, on stderr:
 *
 *   2026-12-03T07:41:25.123Z sightline: MESSAGE
 *
 * (UTC, milliseconds), always one line: control characters in the message (a newline in a
 * space name, a script's traceback) become spaces, so that no text can forge a line.
 */
#pragma once

#include <stdarg.h>

void sl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sl_vlog(const char *fmt, va_list ap);
