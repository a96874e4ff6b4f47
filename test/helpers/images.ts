// Tests share one image cache (content-addressed: a rebuild happens only when an input changes).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const IMAGES_DIR = path.resolve(fileURLToPath(new URL('../../var/images', import.meta.url)));
