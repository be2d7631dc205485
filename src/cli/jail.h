/* --jail, --cpu-quota and --mem-limit of run and start: the plan of what a
 * VM's VMM may reach (src/confine/jail.h), made from its options before
 * the VM is built, and its cgroup (src/confine/cgroup.h). */
#ifndef SMOLVM_CLI_JAIL_H
#define SMOLVM_CLI_JAIL_H

#include <stdbool.h>

#include "cli/vm_options.h"
#include "confine/confine.h"

/* Confines this process (still one thread) as o asks, for the VM name;
 * start (its network is the bundle's, not known yet) names what it
 * starts in bundle (a file, or an instance's name: left out). Says on stderr which confinement it
 * got when it is less than a jail. Returns a CLI exit code. */
int cli_confine(const struct vm_options *o, const char *name, bool start, const char *bundle);

/* A spare VMM (smolvm serve keeps one ready, cli/start.c): the parts of a
 * start's jail plan that do not depend on what it starts -- devices,
 * caches, layers, the net helper's files -- made now, before it is told,
 * so cli_confine() only adds the VM's own. Does nothing without o->jail;
 * a failure is forgotten (the start then makes its plan whole, and says
 * what fails). */
void cli_confine_ahead(const struct vm_options *o);
/* A spare as it is named: whether the jail's template it made ahead is
 * still the host's (mounts, paths, links unchanged); not, it is let go of
 * with the parts made ahead (the start makes its plan as the host is now). */
bool cli_confine_ahead_current(void);
/* Whether cli_confine_ahead() made the jail's template (not checked). */
bool cli_confine_template_made(void);
/* A spare's VMM forked before its name (cli/start.c), over the template
 * cli_confine_ahead() made (cli_confine_ahead_current(): there is one):
 * confine/jail.h's jail_fork_waiting(). 1 in the VMM, whose cli_confine()
 * then makes its plan and confines it over the template; 0 in its relay
 * to be, which, once the VM's name is known, calls
 * cli_confine_relay_waiting(): what the VM leaves planned, the VMM told
 * the name on vmm_name_fd, and relays. -errno, or an error (err.h). */
int cli_confine_fork_waiting(void);
void cli_confine_relay_waiting(const char *name, int vmm_name_fd) __attribute__((noreturn));
/* Forgets what cli_confine_ahead() made (tests). */
void cli_confine_ahead_release(void);

/* receive's, once the source has connected and before a byte of it is
 * read: with jail, the VMM of the VM it will start (start's plan: the data
 * folder, where the VM arrives, the shares, the net helper), its instance
 * folder receiving's temporary one when it has one (machine/instance.h:
 * bound where NAME's is, named NAME once the VM has arrived), else NAME's.
 * Returns a CLI exit code. */
struct instance_receiving;
int cli_confine_receiver(bool jail, const struct vm_share_config *shares, unsigned share_count,
                         const char *name, const struct instance_receiving *receiving);

/* Before any work, whether KVM can run a VM here (hv_check()); when the
 * VMM will be another process -- a jail's, forked into its namespaces, or
 * a detached one -- without making the VM that KVM would tie to this
 * process (hv_check_elsewhere()). 0, or -1 with the message set. */
int cli_hv_check(bool vmm_forked);

/* --seccomp's word (on, off, log): 0 and *mode, or -1 after err_set(). */
int cli_parse_seccomp(const char *word, enum confine_seccomp *mode);

#endif
