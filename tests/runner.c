/*
 * runner.c: runs the test named on the command line in this process (how ctest calls it),
 * or, with no argument, every test each in its own child process with a time limit.
 */
#include "test.h"
#include "test-list.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct entry {
    const char *name;
    int (*fn)(void);
} entry;

#define TEST_ENTRY(name) {#name, run_test_##name},
static const entry tests[] = {TEST_LIST};
#undef TEST_ENTRY

#define NTESTS (sizeof tests / sizeof tests[0])

static int run_child(const entry *t, unsigned timeout)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        alarm(timeout);
        _exit(t->fn());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NTESTS; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc == 2) {
        for (size_t i = 0; i < NTESTS; i++)
            if (strcmp(argv[1], tests[i].name) == 0)
                return tests[i].fn();
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    unsigned failed = 0;
    for (size_t i = 0; i < NTESTS; i++) {
        int rc = run_child(&tests[i], 600);
        printf("%s %s\n", rc == 0 ? "ok    " : "FAILED", tests[i].name);
        failed += rc != 0;
    }
    printf("%zu passed, %u failed\n", NTESTS - failed, failed);
    return failed != 0;
}
