// Package configs carries the sample configuration that ships inside the hcx
// binary: the sample provinces' colour rules. `hcx dev` copies them into its
// data directory on first start, where bureau staff can edit them; the files
// under rules/ are the source of truth and are also read directly by tests.
package configs

import "embed"

// Rules holds rules/<province>.yaml.
//
//go:embed rules/*.yaml
var Rules embed.FS
