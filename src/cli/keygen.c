/* smolvm keygen: a key pair to sign bundles with and check them by. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/signature.h"
#include "cli/cli.h"
#include "util/err.h"

static const char keygen_help[] =
    "usage: smolvm keygen PREFIX [--json]\n"
    "\n"
    "Makes an ed25519 key pair: PREFIX.key, the private key (mode 0600), for\n"
    "'smolvm save --sign' and 'smolvm pack --sign'; PREFIX.pub, the public key,\n"
    "for 'smolvm start --verify' wherever the bundles are started. Neither file\n"
    "may exist yet. A signature covers every section of a bundle through their\n"
    "SHA-256 hashes: a bundle changed after signing is refused. Prints the two\n"
    "files' names.\n"
    "\n"
    "      --json  print {\"private_key\", \"public_key\" (the files), \"key_id\" (the\n"
    "              public key, hex, as PREFIX.pub holds it)}\n";

/* The public key as its file holds it: one line of hex. */
static char *key_id(const char *pub_path)
{
    char line[256] = "";
    FILE *f = fopen(pub_path, "r");
    if (f && !fgets(line, sizeof(line), f))
        line[0] = 0;
    if (f)
        fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    return strdup(line);
}

int cli_keygen(int argc, char **argv)
{
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'}, {0}};
    char *key = NULL, *pub = NULL, *id = NULL;
    int c;

    optind = 1;
    while ((c = cli_getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if (c == 'h') {
            fputs(keygen_help, stdout);
            return CLI_OK;
        }
    if (optind != argc - 1)
        return cli_fail(CLI_USAGE, "takes one PREFIX (try 'smolvm keygen --help')");
    const char *prefix = argv[optind];
    if (bundle_keygen(prefix) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (asprintf(&key, "%s.key", prefix) < 0 || asprintf(&pub, "%s.pub", prefix) < 0 ||
        !(id = key_id(pub)))
        return cli_fail(CLI_FAILED, "out of memory");
    if (cli_json()) {
        json_t *j = json_pack("{s:s,s:s,s:s}", "private_key", key, "public_key", pub, "key_id", id);
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
    } else {
        printf("%s\n%s\n", key, pub);
    }
    free(key);
    free(pub);
    free(id);
    return CLI_OK;
}
