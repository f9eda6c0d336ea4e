<?php

declare(strict_types=1);

namespace TokioPhp\SymfonyRuntime;

use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpKernel\HttpKernelInterface;
use Symfony\Component\HttpKernel\TerminableInterface;
use Symfony\Component\Runtime\RunnerInterface;

/**
 * Serves requests with one kernel until tokio_php says to stop (shutdown, WORKER_MAX_REQUESTS,
 * WATCH). Each request is what a classic request is: handle, send, terminate. The kernel
 * resets its services (those tagged kernel.reset: the session listener, loggers, caches…)
 * when the next request starts.
 */
final class Runner implements RunnerInterface
{
    private HttpKernelInterface $kernel;

    public function __construct(HttpKernelInterface $kernel)
    {
        $this->kernel = $kernel;
    }

    public function run(): int
    {
        // A client that goes away must not end the script: that would cost a reboot.
        ignore_user_abort(true);

        // tokio_php fills each request's $_SERVER and $_ENV afresh, from the request and the
        // process environment. What the runtime added at boot (APP_ENV, APP_DEBUG, a .env
        // file's values) is carried into every request, under the request's own values.
        $server = array_filter(
            $_SERVER,
            static fn (string $name): bool => !str_starts_with($name, 'HTTP_'),
            \ARRAY_FILTER_USE_KEY
        );
        $env = $_ENV;
        $kernel = $this->kernel;

        $handler = static function () use ($kernel, $server, $env): void {
            $_SERVER += $server;
            $_ENV += $env;

            $request = Request::createFromGlobals();
            $response = $kernel->handle($request);
            // Sends the response and ends it (fastcgi_finish_request()): the client does not
            // wait for terminate(), which runs inside the request as under php-fpm.
            $response->send();
            if ($kernel instanceof TerminableInterface) {
                $kernel->terminate($request, $response);
            }
        };

        while (\tokio_handle_request($handler)) {
            gc_collect_cycles();
        }

        return 0;
    }
}
