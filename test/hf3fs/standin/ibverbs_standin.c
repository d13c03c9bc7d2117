/*
 * A stand-in for libibverbs.so.1, for the doctor's tests: it reports one fake RDMA device so the
 * addon's rdmaDevices() and the doctor's findings can be checked on a machine without RDMA.
 * Loaded by the addon through THREEFS_IBVERBS_LIB; built by test/doctor/doctor.test.ts with
 *   gcc -shared -fPIC -o build-test/standin/libibverbs_standin.so test/hf3fs/standin/ibverbs_standin.c
 *
 * The structs below follow rdma-core's <infiniband/verbs.h> (IBVERBS_1.1), laid out from its
 * documentation on their own, so that a layout slip on either side shows up as wrong numbers in
 * the test. Every counter gets a distinct value for the same reason.
 *
 * IBVERBS_STANDIN_PROFILE picks the device:
 *   erdma    (default) Alibaba eRDMA in compatibility mode: max_sge 1, max_qp_rd_atom 8, RoCE-like
 *            Ethernet port, ACTIVE, IPv4-mapped GID 0
 *   e810     Intel E810 (irdma): max_sge 6, max_qp_rd_atom 8
 *   ib       a ConnectX-like InfiniBand HCA with 3FS's defaults or more (max_sge 30)
 *   ib-down  the same with its port DOWN
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* struct ibv_device */
struct standin_device {
  void *reserved_ops[2];
  int node_type;      /* enum ibv_node_type: 1 = CA, 4 = RNIC */
  int transport_type; /* enum ibv_transport_type: 0 = IB, 1 = iWARP */
  char name[64];
  char dev_name[64];
  char dev_path[256];
  char ibdev_path[256];
};

/* struct ibv_context: only its first member, the device, matters to us */
struct standin_context {
  struct standin_device *device;
  long magic;
};

/* struct ibv_device_attr */
struct standin_device_attr {
  char fw_ver[64];
  uint64_t node_guid;
  uint64_t sys_image_guid;
  uint64_t max_mr_size;
  uint64_t page_size_cap;
  uint32_t vendor_id;
  uint32_t vendor_part_id;
  uint32_t hw_ver;
  int32_t max_qp;
  int32_t max_qp_wr;
  uint32_t device_cap_flags;
  int32_t max_sge;
  int32_t max_sge_rd;
  int32_t max_cq;
  int32_t max_cqe;
  int32_t max_mr;
  int32_t max_pd;
  int32_t max_qp_rd_atom;
  int32_t max_ee_rd_atom;
  int32_t max_res_rd_atom;
  int32_t max_qp_init_rd_atom;
  int32_t max_ee_init_rd_atom;
  int32_t atomic_cap;
  int32_t max_ee;
  int32_t max_rdd;
  int32_t max_mw;
  int32_t max_raw_ipv6_qp;
  int32_t max_raw_ethy_qp;
  int32_t max_mcast_grp;
  int32_t max_mcast_qp_attach;
  int32_t max_total_mcast_qp_attach;
  int32_t max_ah;
  int32_t max_fmr;
  int32_t max_map_per_fmr;
  int32_t max_srq;
  int32_t max_srq_wr;
  int32_t max_srq_sge;
  uint16_t max_pkeys;
  uint8_t local_ca_ack_delay;
  uint8_t phys_port_cnt;
};

/* struct _compat_ibv_port_attr: what the exported ibv_query_port fills */
struct standin_port_attr {
  int32_t state;      /* enum ibv_port_state: 1 DOWN, 4 ACTIVE */
  int32_t max_mtu;    /* enum ibv_mtu: 1 = 256 ... 5 = 4096 */
  int32_t active_mtu;
  int32_t gid_tbl_len;
  uint32_t port_cap_flags;
  uint32_t max_msg_sz;
  uint32_t bad_pkey_cntr;
  uint32_t qkey_viol_cntr;
  uint16_t pkey_tbl_len;
  uint16_t lid;
  uint16_t sm_lid;
  uint8_t lmc;
  uint8_t max_vl_num;
  uint8_t sm_sl;
  uint8_t subnet_timeout;
  uint8_t init_type_reply;
  uint8_t active_width;
  uint8_t active_speed;
  uint8_t phys_state;
  uint8_t link_layer; /* 0 unspecified, 1 InfiniBand, 2 Ethernet */
  uint8_t flags;
};

_Static_assert(sizeof(struct standin_device_attr) == 232, "ibv_device_attr size");
_Static_assert(sizeof(struct standin_port_attr) == 48, "_compat_ibv_port_attr size");

struct profile {
  const char *name;
  int node_type;
  int transport_type;
  const char *fw;
  int max_sge, max_qp_rd_atom;
  int port_state, link_layer, active_mtu;
  uint16_t lid;
  uint8_t gid[16];
};

static const struct profile profiles[] = {
    {"erdma_0", 4, 0, "0.2.38", 1, 8, 4, 2, 3, 0,
     {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}},
    {"irdma0", 4, 0, "1.71", 6, 8, 4, 2, 5, 0,
     {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x6e, 0xfe, 0x54, 0xff, 0xfe, 0x3d, 0x88, 0x10}},
    {"mlx5_0", 1, 0, "28.39.1002", 30, 16, 4, 1, 5, 7,
     {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x58, 0xa2, 0xe1, 0x03, 0x00, 0x1c, 0xaa, 0xbb}},
    {"mlx5_0", 1, 0, "28.39.1002", 30, 16, 1, 1, 5, 0,
     {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x58, 0xa2, 0xe1, 0x03, 0x00, 0x1c, 0xaa, 0xbb}},
};

static const struct profile *current(void) {
  const char *p = getenv("IBVERBS_STANDIN_PROFILE");
  if (p == NULL || strcmp(p, "erdma") == 0) return &profiles[0];
  if (strcmp(p, "e810") == 0) return &profiles[1];
  if (strcmp(p, "ib") == 0) return &profiles[2];
  if (strcmp(p, "ib-down") == 0) return &profiles[3];
  return &profiles[0];
}

static struct standin_device the_device;

struct standin_device **ibv_get_device_list(int *num_devices) {
  const struct profile *p = current();
  struct standin_device **list = calloc(2, sizeof *list);
  if (list == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  memset(&the_device, 0, sizeof the_device);
  the_device.node_type = p->node_type;
  the_device.transport_type = p->transport_type;
  strncpy(the_device.name, p->name, sizeof the_device.name - 1);
  strncpy(the_device.dev_name, "uverbs0", sizeof the_device.dev_name - 1);
  list[0] = &the_device;
  if (num_devices != NULL) *num_devices = 1;
  return list;
}

void ibv_free_device_list(struct standin_device **list) { free(list); }

const char *ibv_get_device_name(struct standin_device *device) { return device->name; }

uint64_t ibv_get_device_guid(struct standin_device *device) {
  (void)device;
  return htobe64(0x0002c90300a1b2c3ULL); /* network order, as the real one */
}

struct standin_context *ibv_open_device(struct standin_device *device) {
  struct standin_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  ctx->device = device;
  ctx->magic = 0x5747;
  return ctx;
}

int ibv_close_device(struct standin_context *ctx) {
  if (ctx == NULL || ctx->magic != 0x5747) abort(); /* a double close or a stray pointer */
  ctx->magic = 0;
  free(ctx);
  return 0;
}

int ibv_query_device(struct standin_context *ctx, struct standin_device_attr *attr) {
  const struct profile *p = current();
  (void)ctx;
  memset(attr, 0, sizeof *attr);
  strncpy(attr->fw_ver, p->fw, sizeof attr->fw_ver - 1);
  attr->node_guid = htobe64(0x0002c90300a1b2c3ULL);
  attr->max_mr_size = 1ULL << 40;
  attr->page_size_cap = 0xfffff000;
  attr->vendor_id = 0x1ded;
  attr->max_qp = 1001;
  attr->max_qp_wr = 1002;
  attr->max_sge = p->max_sge;
  attr->max_sge_rd = 1003;
  attr->max_cq = 1004;
  attr->max_cqe = 1005;
  attr->max_mr = 1006;
  attr->max_pd = 1007;
  attr->max_qp_rd_atom = p->max_qp_rd_atom;
  attr->max_res_rd_atom = 1008;
  attr->max_qp_init_rd_atom = p->max_qp_rd_atom;
  attr->max_srq_sge = 1009;
  attr->max_pkeys = 1;
  attr->phys_port_cnt = 1;
  return 0;
}

int ibv_query_port(struct standin_context *ctx, uint8_t port_num, struct standin_port_attr *attr) {
  const struct profile *p = current();
  (void)ctx;
  if (port_num != 1) return EINVAL; /* an errno value, as the real one returns */
  memset(attr, 0, sizeof *attr);
  attr->state = p->port_state;
  attr->max_mtu = 5;
  attr->active_mtu = p->active_mtu;
  attr->gid_tbl_len = 16;
  attr->lid = p->lid;
  attr->phys_state = p->port_state == 4 ? 5 : 3; /* LinkUp / Disabled */
  attr->link_layer = (uint8_t)p->link_layer;
  return 0;
}

int ibv_query_gid(struct standin_context *ctx, uint8_t port_num, int index, uint8_t gid[16]) {
  (void)ctx;
  if (port_num != 1 || index != 0) {
    errno = EINVAL;
    return -1;
  }
  memcpy(gid, current()->gid, 16);
  return 0;
}
