/*
 * sightctl: the admin client. Sends its arguments as one command line to the server's
 * admin socket and prints the answer; exit status 0 on success, 1 when the command failed,
 * 2 when the server cannot be reached.
 *
 *   sightctl [--admin PATH] stats | spaces | create SPACE W H | entity SPACE ID |
 *            why SPACE W T | reload | record start FILE [SPACE] | record stop |
 *            space get NAME | space put NAME FILE [REV] | shutdown | help
 *
 * `space put` sends the file's JSON (on one line) with the revision it expects (REV, from
 * `space get`; 0 or left out: the space must not exist yet).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
    if (i >= argc || !strcmp(argv[i], "--help")) {
        fprintf(i >= argc ? stderr : stdout,
                "usage: sightctl [--admin PATH] COMMAND [ARGS]\n"
                "commands: stats | spaces | create SPACE WIDTH HEIGHT | entity SPACE ID |\n"
                "          why SPACE WATCHER TARGET | reload | record start FILE [SPACE] |\n"
                "          record stop | space get NAME | space put NAME FILE [REV] |\n"
                "          shutdown | help\n"
                "PATH defaults to $SIGHTLINE_ADMIN, else sightline.sock.\n");
        return i >= argc ? 2 : 0;
    }
    char line[8192] = "";
    if (i + 2 < argc && !strcmp(argv[i], "space") && !strcmp(argv[i + 1], "put")) {
        /* space put NAME FILE [REV]: the document goes on the line, newlines flattened. */
        if (i + 3 >= argc) {
            fprintf(stderr, "sightctl: usage: space put NAME FILE [REV]\n");
            return 2;
        }
        FILE *f = fopen(argv[i + 3], "r");
        if (!f) {
            fprintf(stderr, "sightctl: %s: %m\n", argv[i + 3]);
            return 2;
        }
        int n = snprintf(line, sizeof line, "space put %s %s ", argv[i + 2],
                         i + 4 < argc ? argv[i + 4] : "0");
        size_t k = fread(line + n, 1, sizeof line - (size_t)n - 2, f);
        bool more = fgetc(f) != EOF;
        fclose(f);
        if (more) {
            fprintf(stderr, "sightctl: %s: a space definition is at most %zu bytes\n",
                    argv[i + 3], sizeof line - (size_t)n - 2);
            return 2;
        }
        for (size_t j = (size_t)n; j < (size_t)n + k; j++)
            if (line[j] == '\n' || line[j] == '\r')
                line[j] = ' ';
        line[n + k] = '\n';
        line[n + k + 1] = '\0';
        i = argc;
    }
    for (; i < argc; i++) {
        if (strlen(line) + strlen(argv[i]) + 2 >= sizeof line) {
            fprintf(stderr, "sightctl: command too long\n");
            return 2;
        }
        strcat(line, argv[i]);
        strcat(line, i + 1 < argc ? " " : "\n");
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "sightctl: socket path too long\n");
        return 2;
    }
    strcpy(sa.sun_path, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "sightctl: cannot reach the server at %s: %m\n", path);
        return 2;
    }
    size_t len = strlen(line);
    if (write(fd, line, len) != (ssize_t)len) {
        fprintf(stderr, "sightctl: write: %m\n");
        return 2;
    }
    /* The answer ends with a line ".ok" or ".fail". */
    char buf[1 << 16];
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        buf[n] = '\0';
        if (n >= 4 && (strstr(buf, "\n.ok\n") || strstr(buf, "\n.fail\n") ||
                       !strncmp(buf, ".ok\n", 4) || !strncmp(buf, ".fail\n", 6)))
            break;
        if (n == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[n] = '\0';
    char *end = strstr(buf, ".ok\n");
    int status = 0;
    char *fail = strstr(buf, ".fail\n");
    if (fail && (!end || fail < end)) {
        end = fail;
        status = 1;
    }
    if (!end) {
        fprintf(stderr, "sightctl: the server closed without an answer\n");
        fputs(buf, stdout);
        return 2;
    }
    *end = '\0';
    fputs(buf, status ? stderr : stdout);
    return status;
}
