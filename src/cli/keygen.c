/* smolvm keygen: a key pair to sign bundles with and check them by. */
#include <stdio.h>
#include <string.h>

#include "bundle/signature.h"
#include "cli/cli.h"
#include "util/err.h"

static const char keygen_help[] =
    "usage: smolvm keygen PREFIX\n"
    "\n"
    "Makes an ed25519 key pair: PREFIX.key, the private key (mode 0600), for\n"
    "'smolvm save --sign' and 'smolvm pack --sign'; PREFIX.pub, the public key,\n"
    "for 'smolvm start --verify' wherever the bundles are started. Neither file\n"
    "may exist yet. A signature covers every section of a bundle through their\n"
    "SHA-256 hashes: a bundle changed after signing is refused.\n";

int cli_keygen(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(keygen_help, stdout);
        return CLI_OK;
    }
    if (argc != 2 || argv[1][0] == '-')
        return cli_fail(CLI_USAGE, "usage: smolvm keygen PREFIX (try 'smolvm keygen --help')");
    if (bundle_keygen(argv[1]) < 0)
        return cli_fail(CLI_FAILED, "keygen: %s", err_msg());
    printf("%s.key\n%s.pub\n", argv[1], argv[1]);
    return CLI_OK;
}
