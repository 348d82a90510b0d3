/*
 * sightctl: the admin client. Sends its arguments as one command line to the server's
 * admin socket (a Unix socket) and prints the answer; exit status 0 on success, 1 when the
 * command failed, 2 for a usage error, an unreadable file or a server it cannot reach.
 *
 *   sightctl [--admin PATH] stats | spaces | create SPACE W H | entity SPACE ID |
 *            why SPACE W T | reload | record start FILE [SPACE] | record stop |
 *            space get NAME | space put NAME FILE [REV] | space check FILE |
 *            space migrate NAME|--all | shutdown | help
 *
 * The protocol is lines: one command line in, the answer's lines out, ending with a line
 * ".ok" or ".fail". `space put` sends the file's JSON (flattened to one line) with the
 * revision it expects (REV, from `space get`; 0 or left out: the space must not exist yet).
 * `space check FILE` needs no server: it checks a definition exactly as a server would
 * (server/schema.h) and says what it configures, or why it would be refused.
 */
#include "server/schema.h"

#include "engine/index.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Exit statuses. */
enum { OK = 0, FAILED = 1, TROUBLE = 2 };  /* TROUBLE: usage, file or socket */

static int usage(bool asked)
{
    fprintf(asked ? stdout : stderr,
            "usage: sightctl [--admin PATH] COMMAND [ARGS]\n"
            "commands: stats | spaces | create SPACE WIDTH HEIGHT | entity SPACE ID |\n"
            "          why SPACE WATCHER TARGET | reload | record start FILE [SPACE] |\n"
            "          record stop | space get NAME | space put NAME FILE [REV] |\n"
            "          space check FILE | space migrate NAME|--all | cluster | shutdown |\n"
            "          help\n"
            "PATH defaults to $SIGHTLINE_ADMIN, else sightline.sock.\n");
    return asked ? OK : TROUBLE;
}

/* `space put NAME FILE [REV]` (args[0] is NAME): the document goes on the line, its
 * newlines flattened. Returns OK or TROUBLE (with the reason on stderr). */
static int space_put_line(int argc, char **args, char *line, size_t len)
{
    if (argc < 2) {
        fprintf(stderr, "sightctl: usage: space put NAME FILE [REV]\n");
        return TROUBLE;
    }
    FILE *f = fopen(args[1], "r");
    if (!f) {
        fprintf(stderr, "sightctl: %s: %m\n", args[1]);
        return TROUBLE;
    }
    int n = snprintf(line, len, "space put %s %s ", args[0], argc > 2 ? args[2] : "0");
    size_t k = fread(line + n, 1, len - (size_t)n - 2, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    if (more) {
        fprintf(stderr, "sightctl: %s: a space definition is at most %zu bytes\n", args[1],
                len - (size_t)n - 2);
        return TROUBLE;
    }
    for (size_t j = (size_t)n; j < (size_t)n + k; j++)
        if (line[j] == '\n' || line[j] == '\r')
            line[j] = ' ';
    line[n + k] = '\n';
    line[n + k + 1] = '\0';
    return OK;
}

/* The words joined by spaces, ending with a newline. Returns OK or TROUBLE. */
static int command_line(int argc, char **args, char *line, size_t len)
{
    if (argc > 2 && !strcmp(args[0], "space") && !strcmp(args[1], "put"))
        return space_put_line(argc - 2, args + 2, line, len);
    line[0] = '\0';
    for (int i = 0; i < argc; i++) {
        if (strlen(line) + strlen(args[i]) + 2 >= len) {
            fprintf(stderr, "sightctl: command too long\n");
            return TROUBLE;
        }
        strcat(line, args[i]);
        strcat(line, i + 1 < argc ? " " : "\n");
    }
    return OK;
}

/* Whether the answer so far has its last line (".ok" or ".fail"). */
static bool answer_done(const char *buf, size_t n)
{
    return n >= 4 && (strstr(buf, "\n.ok\n") || strstr(buf, "\n.fail\n") ||
                      !strncmp(buf, ".ok\n", 4) || !strncmp(buf, ".fail\n", 6));
}

/* Sends the line to the admin socket at path and reads the answer into buf (NUL-ended,
 * len bytes at most). Returns OK or TROUBLE. */
static int ask(const char *path, const char *line, char *buf, size_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "sightctl: socket path too long\n");
        return TROUBLE;
    }
    strcpy(sa.sun_path, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "sightctl: cannot reach the server at %s: %m\n", path);
        return TROUBLE;
    }
    size_t n = strlen(line);
    if (write(fd, line, n) != (ssize_t)n) {
        fprintf(stderr, "sightctl: write: %m\n");
        return TROUBLE;
    }
    n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, len - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        buf[n] = '\0';
        if (answer_done(buf, n) || n == len - 1)
            break;
    }
    close(fd);
    buf[n] = '\0';
    return OK;
}

/* Prints the answer without its last line: on stdout after ".ok", on stderr after ".fail".
 * Returns the exit status. */
static int print_answer(char *buf)
{
    char *end = strstr(buf, ".ok\n");
    int status = OK;
    char *fail = strstr(buf, ".fail\n");
    if (fail && (!end || fail < end)) {
        end = fail;
        status = FAILED;
    }
    if (!end) {
        fprintf(stderr, "sightctl: the server closed without an answer\n");
        fputs(buf, stdout);
        return TROUBLE;
    }
    *end = '\0';
    fputs(buf, status ? stderr : stdout);
    return status;
}

/* `space check FILE`: the server's own checks, offline. OK (valid), FAILED (refused) or
 * TROUBLE (unreadable). */
static int space_check(const char *file)
{
    static char doc[1 << 20];
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "sightctl: %s: %m\n", file);
        return TROUBLE;
    }
    size_t n = fread(doc, 1, sizeof doc, f);
    fclose(f);
    sl_space_doc d;
    char why[512];
    if (sl_space_doc_parse(doc, n, &d, why, sizeof why)) {
        fprintf(stderr, "refused: %s\n", why);
        return FAILED;
    }
    printf("valid: schema 1.%u.%u%s, map %gx%g, index %s, cell %g, hysteresis %g, stay %s, "
           "tick_ms %g, scripts %s, %zu static zones\n", d.minor, d.patch,
           d.legacy_hash ? " (old schema_hash basis: deprecated, rewrite it: space migrate)"
                         : "",
           (double)d.cfg.width, (double)d.cfg.height, sl_index_kind_name(d.cfg.index),
           (double)d.cfg.cell, (double)d.cfg.hysteresis, d.cfg.stay ? "true" : "false",
           d.tick_ms, d.scripts[0] ? d.scripts : "(the server's)", d.nzones);
    sl_space_doc_free(&d);
    return OK;
}

int main(int argc, char **argv)
{
    const char *path = getenv("SIGHTLINE_ADMIN");
    if (!path)
        path = "sightline.sock";
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--admin") == 0) {
        path = argv[i + 1];
        i += 2;
    }
    if (i >= argc || !strcmp(argv[i], "--help"))
        return usage(i < argc);
    if (argc - i == 3 && !strcmp(argv[i], "space") && !strcmp(argv[i + 1], "check"))
        return space_check(argv[i + 2]);
    char line[8192];
    static char buf[1 << 16];
    int rc = command_line(argc - i, argv + i, line, sizeof line);
    if (rc == OK)
        rc = ask(path, line, buf, sizeof buf);
    return rc == OK ? print_answer(buf) : rc;
}
