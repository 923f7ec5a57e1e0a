// Command etcd is the stock etcd server, built from the go.etcd.io/etcd/server/v3
// module pinned in ../go.mod (the version k8s.io/kubernetes itself is tested with).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
