package metrics

import (
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// DiskCollector serves berth_raft_disk_{free,total}_bytes of the file
// system holding dir (the data dir with the Raft log and snapshots), read
// at each scrape, so alerts need no node exporter.
func DiskCollector(dir string) prometheus.Collector {
	free := prometheus.NewDesc("berth_raft_disk_free_bytes", "Bytes available to this server on the file system of its Raft data dir.", nil, nil)
	total := prometheus.NewDesc("berth_raft_disk_total_bytes", "Size of the file system of this server's Raft data dir.", nil, nil)
	return funcCollector{
		descs: []*prometheus.Desc{free, total},
		collect: func(ch chan<- prometheus.Metric) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err != nil {
				ch <- prometheus.NewInvalidMetric(free, err)
				return
			}
			bs := float64(st.Bsize)
			ch <- prometheus.MustNewConstMetric(free, prometheus.GaugeValue, float64(st.Bavail)*bs)
			ch <- prometheus.MustNewConstMetric(total, prometheus.GaugeValue, float64(st.Blocks)*bs)
		},
	}
}
