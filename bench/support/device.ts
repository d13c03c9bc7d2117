// The block device under the bench's files, from sysfs: what the setup line names, so a table
// says which device (and which kind: a VM's virtio disk may have a host cache below it) it measured.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { formatSize } from './units';

export interface BlockDevice {
  /** The disk's kernel name ('vda', 'nvme0n1'); a partition is reported as its disk. */
  name: string;
  /** Its driver ('virtio_blk', 'nvme'), '' when sysfs does not say. */
  driver: string;
  bytes: number;
  /** Segments one request may carry (a request of scattered memory splits past it). */
  maxSegments: number | null;
  /** Largest request, KiB. */
  maxSectorsKb: number | null;
  rotational: boolean;
}

/** The glibc encoding of st_dev: major and minor numbers. */
function majorMinor(dev: number): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The disk holding `path`, or undefined when it is on no block device (tmpfs, FUSE, NFS). */
export function blockDeviceOf(path: string): BlockDevice | undefined {
  let sys: string;
  try {
    sys = realpathSync(`/sys/dev/block/${majorMinor(statSync(path).dev)}`);
  } catch {
    return undefined;
  }
  if (existsSync(join(sys, 'partition'))) sys = dirname(sys);
  const num = (file: string) => {
    const text = read(join(sys, 'queue', file));
    return text === undefined ? null : Number(text);
  };
  let driver = '';
  try {
    driver = basename(realpathSync(join(sys, 'device', 'driver')));
  } catch {
    // a virtual device (zram, loop, dm) has no driver link
  }
  return { name: basename(sys), driver, bytes: Number(read(join(sys, 'size')) ?? 0) * 512, maxSegments: num('max_segments'), maxSectorsKb: num('max_sectors_kb'), rotational: read(join(sys, 'queue', 'rotational')) === '1' };
}

/** 'vda (virtio_blk, 256GiB, SSD, 254 segments, 4096KiB max request)'. */
export function describeDevice(d: BlockDevice | undefined, fsType: string): string {
  if (!d) return `no block device (${fsType})`;
  const parts = [d.driver, formatSize(d.bytes), d.rotational ? 'rotational' : 'non-rotational'];
  if (d.maxSegments !== null) parts.push(`${d.maxSegments} segments`);
  if (d.maxSectorsKb !== null) parts.push(`${d.maxSectorsKb}KiB max request`);
  return `${d.name} (${parts.filter(Boolean).join(', ')})`;
}
