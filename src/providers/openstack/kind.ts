// The `openstack` provider kind: Nova servers, authenticated by Keystone v3 (a password or an
// application credential), guests reporting over the service's HTTP guest channel.
import { z } from 'zod';
import { defineProviderKind } from '../kind.ts';
import type { Credentials } from './keystone.ts';
import { OpenStackProvider, type OpenStackPlacement } from './provider.ts';

const seconds = (def: number, min = 1) => z.number().min(min).max(86_400).default(def);
const name = z.string().min(1).max(255);

export const openstackSettings = z
  .object({
    auth_url: z.string().url().describe('Keystone v3, e.g. https://keystone.example.org:5000/v3'),
    region: name.optional().describe('catalog endpoints of this region (default: the first)'),
    interface: z.enum(['public', 'internal', 'admin']).default('public'),
    username: name.optional(),
    user_domain: name.default('Default'),
    password: z.string().min(1).optional().describe('with username and project'),
    project: name.optional(),
    project_domain: name.default('Default'),
    application_credential_id: name.optional(),
    application_credential_name: name.optional().describe('with username (and user_domain)'),
    application_credential_secret: z.string().min(1).optional(),
    request_timeout: seconds(30).describe('seconds per HTTP request'),
    retry_for: seconds(30, 0).describe(
      'seconds transient failures (5xx, 429, timeouts, refused) are retried',
    ),
    build_timeout: seconds(600).describe('seconds a server may stay in BUILD'),
    delete_timeout: seconds(300).describe('seconds a deleted server may take to disappear'),
    poll_interval: z
      .number()
      .min(0.05)
      .max(60)
      .default(1)
      .describe('seconds between looks at a building server'),
  })
  .strict()
  .superRefine((s, ctx) => {
    const issue = (message: string) => ctx.addIssue({ code: 'custom', message });
    const appCred = s.application_credential_id !== undefined || s.application_credential_name !== undefined;
    if (appCred) {
      if (s.application_credential_id !== undefined && s.application_credential_name !== undefined)
        issue('application_credential_id and application_credential_name: give one');
      if (s.application_credential_secret === undefined) issue('application_credential_secret is required');
      if (s.application_credential_name !== undefined && s.username === undefined)
        issue('application_credential_name needs username');
      if (s.password !== undefined) issue('password: give either a password or an application credential');
    } else {
      if (s.username === undefined || s.password === undefined || s.project === undefined)
        issue('username, password and project are required (or an application credential)');
      if (s.application_credential_secret !== undefined)
        issue('application_credential_secret needs application_credential_id or _name');
    }
  });

export type OpenStackSettings = z.infer<typeof openstackSettings>;

export const openstackPoolSettings = z
  .object({
    flavor: name.describe('flavor name or id'),
    network: name
      .default('auto')
      .describe('network name or id; `auto`: the one network the project sees; `none`'),
    guest_net: z
      .string()
      .regex(/^(none|dhcp|static:[0-9./,]+)$/)
      .default('none')
      .describe('HATCHERY_NET for the guest: `none` when the image configures its network (cloud-init)'),
    security_groups: z.array(name).default([]),
  })
  .strict();

export type OpenStackPoolSettings = z.infer<typeof openstackPoolSettings>;

export function credentials(s: OpenStackSettings): Credentials {
  if (s.application_credential_id !== undefined)
    return {
      method: 'application_credential',
      id: s.application_credential_id,
      secret: s.application_credential_secret!,
    };
  if (s.application_credential_name !== undefined)
    return {
      method: 'application_credential',
      name: s.application_credential_name,
      username: s.username!,
      userDomain: s.user_domain,
      secret: s.application_credential_secret!,
    };
  return {
    method: 'password',
    username: s.username!,
    userDomain: s.user_domain,
    password: s.password!,
    project: s.project!,
    projectDomain: s.project_domain,
  };
}

export const openstackKind = defineProviderKind<OpenStackSettings, OpenStackPoolSettings>({
  settings: openstackSettings,
  poolSettings: openstackPoolSettings,
  create(settings, deps) {
    const placements = new Map<string, OpenStackPlacement>(
      deps.pools.map((p) => [
        p.name,
        {
          flavor: p.settings.flavor,
          network: p.settings.network,
          guestNet: p.settings.guest_net,
          securityGroups: p.settings.security_groups,
        },
      ]),
    );
    return new OpenStackProvider({
      instanceId: deps.instanceId,
      keystone: {
        authUrl: settings.auth_url,
        credentials: credentials(settings),
        interface: settings.interface,
        ...(settings.region !== undefined ? { region: settings.region } : {}),
      },
      http: { timeoutMs: settings.request_timeout * 1000, retryForMs: settings.retry_for * 1000 },
      placement: (pool) => placements.get(pool),
      buildTimeoutMs: settings.build_timeout * 1000,
      deleteTimeoutMs: settings.delete_timeout * 1000,
      pollMs: settings.poll_interval * 1000,
      onEvent: (fields, message) => deps.log.info(fields, message),
    });
  },
});
