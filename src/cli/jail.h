/* --jail, --cpu-quota and --mem-limit of run and start: the plan of what a
 * VM's VMM may reach (src/confine/jail.h), made from its options before
 * the VM is built, and its cgroup (src/confine/cgroup.h). */
#ifndef SMOLVM_CLI_JAIL_H
#define SMOLVM_CLI_JAIL_H

#include <stdbool.h>

#include "cli/vm_options.h"

/* Confines this process (still one thread) as o asks, for the VM name;
 * start (its network is the bundle's, not known yet) names what it
 * starts in bundle (a file, or an instance's name: left out). Says on stderr which confinement it
 * got when it is less than a jail. Returns a CLI exit code. */
int cli_confine(const struct vm_options *o, const char *name, bool start, const char *bundle);

#endif
