// Package packaging holds no code: its tests check roamtun's installation,
// `make install` and the Debian package that `make deb` builds (lintian,
// then install, upgrade, remove and purge in a throwaway overlay of the
// root filesystem, leaving the host as it was).
package packaging
