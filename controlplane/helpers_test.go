// SPDX-License-Identifier: Apache-2.0

package controlplane_test

import "os"

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
