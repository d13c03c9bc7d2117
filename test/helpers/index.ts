// The tests' helpers, by purpose; `from '../helpers'` takes them from here.
export * from './paths';
export * from './engine';
export * from './tmp';
export * from './rng';
export * from './oracles';
export * from './waits';
export * from './process';
