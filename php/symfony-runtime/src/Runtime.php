<?php

declare(strict_types=1);

namespace TokioPhp\SymfonyRuntime;

use Symfony\Component\HttpKernel\HttpKernelInterface;
use Symfony\Component\Runtime\RunnerInterface;
use Symfony\Component\Runtime\SymfonyRuntime;

/**
 * Symfony's own runtime, plus tokio_php's worker mode: in the script tokio_php runs as
 * WORKER_SCRIPT, an HTTP kernel is booted once and serves requests in a loop ({@see Runner});
 * everywhere else (classic requests, the console) it behaves exactly as SymfonyRuntime.
 *
 * Select it with APP_RUNTIME=TokioPhp\SymfonyRuntime\Runtime in the server's environment, or
 * as "extra.runtime.class" in composer.json.
 */
class Runtime extends SymfonyRuntime
{
    public function getRunner(?object $application): RunnerInterface
    {
        if ($application instanceof HttpKernelInterface && self::inWorkerScript()) {
            return new Runner($application);
        }

        return parent::getRunner($application);
    }

    /** Whether this script is a tokio_php worker script (WORKER_SCRIPT). */
    public static function inWorkerScript(): bool
    {
        return '1' === ($_SERVER['TOKIO_PHP_WORKER'] ?? null) && \function_exists('tokio_handle_request');
    }
}
