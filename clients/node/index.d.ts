// Types of token-broker-zoho. The SDK (@zohocrm/nodejs-sdk-8.0) ships no types; its classes are `any` here.

export declare const VERSION: string;
/** The `code` of the SDKExceptions this store raises for its own (non-broker) errors. */
export declare const ERROR_CODE: "TOKEN_STORE";
/** Zoho accounts server host -> broker provider key (accounts.zoho.com -> zoho-us, ...). */
export declare const ACCOUNTS_PROVIDERS: Readonly<Record<string, string>>;
/** The broker provider key for an SDK environment's accounts URL, or null. */
export declare function providerForAccountsUrl(accountsUrl: string | null | undefined): string | null;
/** The user name the broker keeps for the SDK's Utility.getUserName answer: as is ("<email>:<org zgid>"), trimmed; empty -> null. */
export declare function brokerUserName(sdkUserName: string | null | undefined): string | null;

export interface BrokerResponseInfo {
  operation: string;
  method: string;
  /** The path of the broker call (no query string, no host). */
  path: string;
  status: number;
  /** The answer's text. */
  body: string;
}

export interface BrokerTokenStoreOptions {
  /** The broker's base URL, e.g. "http://127.0.0.1:8080". */
  url: string;
  /** The caller JWT, or a (sync or async) function returning one, called for every request. */
  jwt: string | (() => string | Promise<string>);
  /** A broker provider key such as "zoho-eu". Default: the SDK environment's data center for new tokens. */
  provider?: string | null;
  /** Seconds to wait for each broker answer. Default 10. */
  timeout?: number;
  /** Managed: access tokens handed to the SDK stay valid at least this many seconds. Default 60. */
  minValidity?: number;
  /** Managed: reuse an access token per broker id this long (never past expiry - minValidity). Default 10; 0: off. */
  cacheSeconds?: number;
  /** false: a plain store; the SDK refreshes itself (needs tokens:secrets). Default true. */
  managed?: boolean;
  /** Managed: look the user's name up in CRM after an exchange/import without a UserSignature. Default true. */
  lookupUserName?: boolean;
  /** Tokens per page while getTokens walks every page. Default 100. */
  pageSize?: number;
  /** The fetch to use. Default: Node's global fetch. */
  fetch?: typeof fetch;
  /** Debug hook: every broker answer the store receives. */
  onResponse?: (info: BrokerResponseInfo) => void;
}

export declare class BrokerTokenStore {
  constructor(options: BrokerTokenStoreOptions);
  readonly url: string;
  readonly provider: string | null;
  readonly timeout: number;
  readonly minValidity: number;
  readonly cacheSeconds: number;
  readonly managed: boolean;
  readonly lookupUserName: boolean;
  readonly pageSize: number;
  findToken(token: any): Promise<any | null>;
  findTokenById(id: string): Promise<any>;
  saveToken(token: any): Promise<void>;
  deleteToken(id: string): Promise<void>;
  getTokens(): Promise<any[]>;
  /** Deletes every token the JWT can see (tokens:admin); resolves to how many. */
  deleteTokens(): Promise<number | undefined>;
  /** The broker revokes the refresh token at Zoho and deletes the token. */
  revokeToken(id: string): Promise<true>;
  /** Drops every cached access token. */
  clearCache(): void;
}

export default BrokerTokenStore;
