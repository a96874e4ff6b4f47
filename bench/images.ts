// The Debian runner image (packer/debian-runner) against the tiny guest: what its build costs
// (first build, then the cached check), and the time to a ready runner on each — a signed
// create webhook → the runner online — in one stack, rounds alternating the order so that the
// machine's drift hits both alike. Needs root (the image build runs debootstrap).
import { buildDebianImage, type DebianImage } from '../test/helpers/debian-image.ts';
import { Stack } from '../test/helpers/stack.ts';
import { hatcheryBoot } from './boot.ts';
import { fmtMs, fmtRatio, median, progress } from './stats.ts';

export interface ImagesResult {
  rounds: number;
  build: DebianImage;
  /** build.sh run again right after: finds the image complete. */
  cached: DebianImage;
  tinyMs: number[];
  debianMs: number[];
}

export async function benchImages(rounds: number): Promise<ImagesResult> {
  progress('images: building the debian-runner image (cached by its inputs)');
  const build = await buildDebianImage((step) => progress(`images: ${step}`));
  const cached = await buildDebianImage();
  if (cached.built) throw new Error('build.sh rebuilt an image it had just built');
  const stack = await Stack.start({
    workers: { poll_ms: 250 },
    pools: [
      { name: 'tiny', labels: ['tiny'] },
      { name: 'debian', labels: ['debian'], image: build.name, memory: 1024, timeouts: { boot: 300 } },
    ],
  });
  const tinyMs: number[] = [];
  const debianMs: number[] = [];
  try {
    // One unmeasured run of each warms the page cache and the service.
    progress('images: warm-up');
    await hatcheryBoot(stack, 0, 'tiny');
    await hatcheryBoot(stack, 0, 'debian');
    for (let r = 1; r <= rounds; r++) {
      for (const label of r % 2 ? ['tiny', 'debian'] : ['debian', 'tiny']) {
        const { ms } = await hatcheryBoot(stack, r, label);
        (label === 'tiny' ? tinyMs : debianMs).push(ms);
      }
      progress(
        `images: round ${r}/${rounds}: tiny ${fmtMs(tinyMs.at(-1)!)}, debian ${fmtMs(debianMs.at(-1)!)}`,
      );
    }
    return { rounds, build, cached, tinyMs, debianMs };
  } finally {
    await stack.stop();
  }
}

export function reportImages(r: ImagesResult): string {
  const tiny = median(r.tinyMs);
  const debian = median(r.debianMs);
  return [
    `debian-runner image (packer/debian-runner) vs the tiny guest (${r.rounds} rounds, medians)`,
    `  image build                  ${r.build.built ? `built in ${fmtMs(r.build.ms)}` : `already cached (${fmtMs(r.build.ms)})`}`,
    `  image build, cached          ${fmtMs(r.cached.ms)}`,
    `  create → online, tiny        ${fmtMs(tiny)}   (all: ${r.tinyMs.map(fmtMs).join(', ')})`,
    `  create → online, debian      ${fmtMs(debian)}   (all: ${r.debianMs.map(fmtMs).join(', ')})`,
    `  ratio debian / tiny          ${fmtRatio(debian / tiny)}`,
  ].join('\n');
}
