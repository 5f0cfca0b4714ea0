// Command fakegpu is the dev cluster's GPU device plugin: it speaks the kubelet's device-plugin
// API (v1beta1) for fake devices, so a real kubelet advertises nvidia.com/gpu capacity, the
// scheduler places GPU pods on the node, and the kubelet admits them and passes each container
// its allocated devices the way NVIDIA's plugin does (NVIDIA_VISIBLE_DEVICES). There is no
// hardware behind the devices: a container gets their ids, never a /dev node.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once; they never change, so the stream then stays open until
// the kubelet closes it.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// Allocate answers what NVIDIA's plugin answers in its default (envvar) strategy.
func (p *plugin) Allocate(_ context.Context, request *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	response := &pluginapi.AllocateResponse{}
	for _, container := range request.ContainerRequests {
		log.Printf("allocating %s", strings.Join(container.DevicesIds, ","))
		response.ContainerResponses = append(response.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(container.DevicesIds, ",")},
		})
	}
	return response, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func register(dir, endpoint, resource string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     endpoint,
		ResourceName: resource,
	})
	return err
}

// serve listens on the plugin's socket and registers it; it returns when the socket is gone
// (a kubelet that restarts clears its device-plugin folder), so the caller starts over.
func serve(dir, resource, product string, count int) error {
	endpoint := "fakegpu.sock"
	socket := filepath.Join(dir, endpoint)
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	devices := make([]*pluginapi.Device, count)
	for i := range devices {
		devices[i] = &pluginapi.Device{ID: fmt.Sprintf("GPU-fake-%s-%d", product, i), Health: pluginapi.Healthy}
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, &plugin{devices: devices})
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()
	if err := register(dir, endpoint, resource); err != nil {
		return fmt.Errorf("registering with the kubelet: %w", err)
	}
	log.Printf("registered %d %s devices (%s) with the kubelet", count, resource, product)
	for {
		time.Sleep(time.Second)
		if _, err := os.Stat(socket); err != nil {
			log.Printf("%s is gone (the kubelet restarted): registering again", socket)
			return nil
		}
	}
}

func main() {
	dir := flag.String("device-plugin-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin folder (its kubelet.sock)")
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource to advertise")
	product := flag.String("product", "NVIDIA-L4", "the product name in the devices' ids")
	count := flag.Int("count", 1, "how many devices")
	flag.Parse()
	for {
		if err := serve(*dir, *resource, *product, *count); err != nil {
			log.Printf("%v; retrying in 1s", err)
		}
		time.Sleep(time.Second)
	}
}
